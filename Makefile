# krill — plain Makefile (see ../shared/conventions.md "Build").
#
#   make            setup (idempotent) + build everything this machine can build
#   make test       build + run every test this machine can run (SANITIZE=1: ASan+UBSan)
#   make demo       the main job end to end on a local broker
#   make bench      benchmark report into docs/benchmarks.md
#   make fuzz       build the libFuzzer targets (clang)
#   make format     clang-format the C sources
#   CUDA=0|1 forces the CUDA backend off/on; CUDA_ARCH="80 89 90" overrides targets.
#
# Every public target runs scripts/setup.sh first, then re-enters make so that
# what setup installed (nvcc) is detected.

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VERSION := $(shell cat $(ROOT)/VERSION)

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build/san
else
BUILD ?= build
endif

# ---------------------------------------------------------------- public targets
.PHONY: all setup test demo bench fuzz format clean build check-test
all: setup
	@$(MAKE) --no-print-directory build

setup:
	@scripts/setup.sh

test: setup
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory check-test

demo: setup
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

bench: setup
	@$(MAKE) --no-print-directory build
	@scripts/bench.sh

clean:
	rm -rf build

format:
	clang-format -i $$(find src tests kernels -name '*.[ch]' -o -name '*.cu')

# ---------------------------------------------------------------- detection
CUDA_HOME_DETECTED := $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc /usr/local/cuda/bin/nvcc) \
                        $(shell command -v nvcc 2>/dev/null) $(wildcard $(ROOT)/.cache/cuda/bin/nvcc))
NVCC_FOUND := $(CUDA_HOME_DETECTED)
ifeq ($(CUDA),0)
  USE_CUDA := 0
else ifeq ($(CUDA),1)
  USE_CUDA := 1
  ifeq ($(NVCC_FOUND),)
    $(error CUDA=1 but no nvcc was found (CUDA_HOME, /usr/local/cuda, PATH, .cache/cuda); run scripts/setup.sh)
  endif
else
  USE_CUDA := $(if $(NVCC_FOUND),1,0)
endif
NVCC := $(NVCC_FOUND)
CUDA_DIR := $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= 80 89 90

# msgpack-c >= 6 renamed its pkg-config module (Ubuntu 24.04: msgpack-c; Debian 12: msgpack).
MSGPACK_PKG := $(if $(shell pkg-config --exists msgpack-c 2>/dev/null && echo y),msgpack-c,msgpack)
PKGS := rdkafka jansson libconfig $(MSGPACK_PKG) libpcre2-8 openblas libmicrohttpd cmocka
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC ?= cc
CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -MMD -MP -pthread \
          -fno-strict-aliasing -Isrc -Isrc/common -Isrc/engine -Isrc/worker $(PKG_CFLAGS) \
          -DKRILL_VERSION=\"$(VERSION)\" $(EXTRA_CFLAGS)
ifneq ($(filter -march%,$(EXTRA_CFLAGS)),)
else
  CFLAGS += -march=x86-64-v3 -mtune=native
endif
# -ldl: backend_module.c dlopens the CUDA module
LDLIBS := $(PKG_LIBS) -lm -lpthread -ldl
# llguidance (constrained decoding): a Rust static library that scripts/build-llguidance.sh
# builds into .cache once; a Rust staticlib also needs libdl, libpthread, libm and libgcc_s.
LLG_VERSION := 1.9.1
LLG_DIR ?= $(ROOT)/.cache/llguidance/$(LLG_VERSION)
CFLAGS += -I$(LLG_DIR)/include
LDLIBS += $(LLG_DIR)/lib/libllguidance.a -ldl -lpthread -lm -lgcc_s
LDFLAGS := -pthread
ifeq ($(SANITIZE),1)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1
  LDFLAGS += -fsanitize=address,undefined
endif

ifeq ($(USE_CUDA),1)
  # the C side has a "cuda" backend (the module below, dlopen'd by backend.c) only once
  # kernels/ has one
  CFLAGS += $(if $(wildcard kernels/*.cu),-DKRILL_CUDA=1)
  NVCCFLAGS := -O3 -std=c++17 -Isrc -Isrc/common -Isrc/engine -Ikernels --expt-relaxed-constexpr \
               $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
               -Xcompiler -Wall,-Wextra,-Werror,-fPIC $(if $(wildcard $(CUDA_DIR)/include/cccl),-I$(CUDA_DIR)/include/cccl)
  # only the CUDA module links these: a program maps them when it loads the module
  CUDA_LIBS := -L$(CUDA_DIR)/lib64 -L$(CUDA_DIR)/lib -Wl,-rpath,$(CUDA_DIR)/lib -lcublasLt -lcublas -lcudart -lstdc++
endif

# ---------------------------------------------------------------- sources
COMMON_SRC := $(wildcard src/common/*.c)
ENGINE_SRC := $(wildcard src/engine/*.c src/engine/cpu/*.c)
WORKER_SRC := $(filter-out src/worker/main.c,$(wildcard src/worker/*.c))
TOOL_SRC   := $(wildcard src/tools/krill-*.c)
TOOLS_LIB_SRC := $(filter-out $(TOOL_SRC),$(wildcard src/tools/*.c))
TEST_SRC   := $(wildcard tests/unit/test_*.c)
CU_SRC     := $(if $(filter 1,$(USE_CUDA)),$(wildcard kernels/*.cu))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
comma := ,
ENGINE_LIB := $(BUILD)/libkrill_engine.a
WORKER_LIB := $(BUILD)/libkrill_worker.a
TOOLS_LIB  := $(BUILD)/libkrill_tools.a
ENGINE_OBJ := $(call obj,$(COMMON_SRC) $(ENGINE_SRC))
CU_OBJ     := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC))
# The CUDA backend is a shared module that backend.c dlopens on first use (a CPU run
# never maps cudart/cuBLAS): build/lib/ beside the programs (src/engine/backend_module.h
# has the search). It resolves the engine functions it calls from the program, so every
# program exports those (the dynamic list scripts/module-syms.sh writes).
CUDA_MODULE := $(if $(CU_SRC),$(BUILD)/lib/libkrill-cuda.so)
CUDA_SYMS  := $(if $(CU_SRC),$(BUILD)/libkrill-cuda.syms)
PROG_LDFLAGS := $(if $(CU_SRC),-Wl$(comma)--dynamic-list=$(CUDA_SYMS))
WORKER_OBJ := $(call obj,$(WORKER_SRC))
TOOLS      := $(patsubst src/tools/%.c,$(BUILD)/%,$(TOOL_SRC))
WORKER_BIN := $(if $(wildcard src/worker/main.c),$(BUILD)/krill-worker)
TESTS      := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRC))

build: banner $(LINK_LIBS) $(CUDA_MODULE) $(TOOLS) $(WORKER_BIN) $(TESTS)

ok = $(if $(1),✓,✗)
banner:
	@echo "krill $(VERSION): build=$(BUILD) cc=$(CC) sanitize=$(SANITIZE)" \
	  "| $(call ok,$(filter 1,$(USE_CUDA))) cuda$(if $(filter 1,$(USE_CUDA)), ($(NVCC); sm_$(subst $() $(),/sm_,$(CUDA_ARCH)); module $(CUDA_MODULE)))" \
	  "| $(call ok,$(findstring openblas,$(PKG_LIBS))) openblas | $(call ok,$(findstring rdkafka,$(PKG_LIBS))) librdkafka" \
	  "| $(call ok,$(shell command -v clang 2>/dev/null)) clang (fuzz)"
	@[ -n "$(PKG_LIBS)" ] || { echo "missing libraries: pkg-config cannot find $(PKGS); run scripts/setup.sh" >&2; exit 1; }
	@[ -f "$(LLG_DIR)/lib/libllguidance.a" ] || { echo "missing llguidance $(LLG_VERSION) in $(LLG_DIR): run scripts/build-llguidance.sh (needs cargo/rustc >= 1.87)" >&2; exit 1; }
.PHONY: banner

# Objects depend on the flags they were built with (CUDA=0/1 switches rebuild).
FLAGS_STAMP := $(BUILD)/.flags-$(shell echo '$(CFLAGS) $(NVCCFLAGS)' | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(BUILD); rm -f $(BUILD)/.flags-*; touch $@

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(ENGINE_LIB): $(ENGINE_OBJ)
	@rm -f $@; ar rcs $@ $^
$(WORKER_LIB): $(WORKER_OBJ)
	@rm -f $@; ar rcs $@ $^
$(TOOLS_LIB): $(call obj,$(TOOLS_LIB_SRC))
	@rm -f $@; ar rcs $@ $^

$(CUDA_MODULE): $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -pthread $^ $(CUDA_LIBS) -o $@
$(CUDA_SYMS): $(CU_OBJ) $(ENGINE_LIB) scripts/module-syms.sh
	@scripts/module-syms.sh $(CU_OBJ) -- $(ENGINE_LIB) >$@.tmp && mv $@.tmp $@

LINK_LIBS := $(if $(WORKER_OBJ),$(WORKER_LIB)) $(ENGINE_LIB)
.PRECIOUS: $(BUILD)/obj/%.o

$(BUILD)/krill-%: $(BUILD)/obj/src/tools/krill-%.o $(TOOLS_LIB) $(LINK_LIBS) $(CUDA_SYMS)
	$(CC) $(LDFLAGS) $(PROG_LDFLAGS) $< $(TOOLS_LIB) $(LINK_LIBS) $(LDLIBS) -o $@

$(BUILD)/krill-worker: $(BUILD)/obj/src/worker/main.o $(LINK_LIBS) $(CUDA_SYMS)
	$(CC) $(LDFLAGS) $(PROG_LDFLAGS) $< $(LINK_LIBS) $(LDLIBS) -o $@

# every unit test links the shared test helpers (tests/unit/testutil.h)
TESTUTIL_OBJ := $(call obj,tests/unit/testutil.c)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TESTUTIL_OBJ) $(TOOLS_LIB) $(LINK_LIBS) $(CUDA_SYMS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(PROG_LDFLAGS) $< $(TESTUTIL_OBJ) $(TOOLS_LIB) $(LINK_LIBS) $(LDLIBS) -o $@

check-test:
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) scripts/run-tests.sh

# ---------------------------------------------------------------- fuzzing
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_CFLAGS := $(filter-out -MMD -MP -march% -mtune% -DKRILL_CUDA%,$(CFLAGS)) -O1 -g -fsanitize=fuzzer,address,undefined
fuzz: setup
	@$(MAKE) --no-print-directory fuzz-build
fuzz-build: $(FUZZ_BIN)
build/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(ENGINE_SRC) $(WORKER_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) $(FUZZ_CFLAGS) $^ $(PKG_LIBS) $(LLG_DIR)/lib/libllguidance.a -ldl -lgcc_s -lm -o $@
.PHONY: fuzz-build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
