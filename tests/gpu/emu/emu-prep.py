#!/usr/bin/env python3
"""emu-prep.py IN.cu OUT.cpp — rewrites a kernels/*.cu file into C++ that g++ compiles
for the CPU emulator (see cuda_emu.h): kernel launches become emulator calls and the
dynamic shared-memory declaration becomes a pointer into the emulated block's memory.
Fails loudly when a launch is not recognised, so a new launch form cannot slip by."""
import re
import sys

src = open(sys.argv[1], encoding="utf-8").read()
launch = re.compile(r"([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(", re.S)
# a generic lambda lets the kernel template deduce its arguments, as a launch does
out, n = launch.subn(lambda m: f"emu_launcher([](auto... a_) {{ {m.group(1)}(a_...); }}, {m.group(2)})(", src)
out, k = re.subn(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?float\s+(\w+)\[\];", r"float *\1 = (float *)emu_dyn_smem();", out)
if "<<<" in out or "extern __shared__" in out:
    sys.exit(f"emu-prep.py: {sys.argv[1]}: a launch or shared declaration was not rewritten")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write(f'#line 1 "{sys.argv[1]}"\n' + out)
print(f"{sys.argv[1]}: {n} launches, {k} dynamic shared declarations")
