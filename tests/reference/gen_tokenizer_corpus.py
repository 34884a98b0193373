#!/usr/bin/env python3
"""gen_tokenizer_corpus.py — writes the tokenizer parity corpus (deterministic).

Outputs (committed):
  tests/data/tokenizer/corpus.txt  one test case per line ('\n' separated, no '\n'
                                   inside a case; other control characters allowed)
  tests/data/tokenizer/docs.txt    multi-line documents; each is written as
                                   doc + "\n" + DOC_SEPARATOR + "\n" (so splitting the
                                   file on "\n" + DOC_SEPARATOR + "\n" gives them back)

All text below was written for krill. The generator mixes hand-written fragments
(prose in many scripts, code, numbers, dates, emoji, contractions, special-token
strings, whitespace runs) with seeded random "soups" of code points drawn from
chosen Unicode blocks. Re-running it gives byte-identical files (Python >= 3.8,
random.Random(seed) is stable).

Usage: python3 tests/reference/gen_tokenizer_corpus.py [outdir]
"""
import os
import random
import sys

DOC_SEPARATOR = "\x1e\x1e KRILL-DOC-END \x1e\x1e"

PROSE = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times.",
        "Tokenizers turn text into integers; models turn integers into more integers.",
        "Please keep the receipt: returns are accepted within 30 days.",
        "She sells sea shells by the sea shore, or so the story goes.",
        "A journey of a thousand miles begins with a single step.",
        "Why does the kettle whistle? Because steam escapes through a narrow opening!",
        "Kafka partitions give ordering per key, not across the whole topic.",
        "The meeting moved from Tuesday to Thursday afternoon (again).",
        "Most people never read the terms and conditions; lawyers count on it.",
    ],
    "fr": [
        "L'été dernier, nous sommes allés à la mer près de Saint-Malo.",
        "Où est la bibliothèque ? Elle est fermée jusqu'à lundi.",
        "Ça coûte cher, mais c'est délicieux : crème brûlée et café noir.",
        "Les élèves français étudient la poésie de Baudelaire au lycée.",
        "Il faut qu'on se dépêche, le train part à 18 h 45 !",
    ],
    "de": [
        "Grüße aus München! Die Straße ist wegen Bauarbeiten gesperrt.",
        "Donaudampfschifffahrtsgesellschaftskapitän ist ein sehr langes Wort.",
        "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
        "Äpfel, Öl und Übungen: alles für das Frühstück um 7 Uhr.",
        "Das Mädchen fährt mit dem Fahrrad zur Schule, weil es schneller ist.",
    ],
    "es": [
        "¿Dónde está el baño? ¡Necesito ayuda, por favor!",
        "El niño comió una piña y un jalapeño en la mañana.",
        "Mañana será otro día; hoy descansamos en Córdoba.",
        "La canción del verano sonó en todas las radios de Andalucía.",
    ],
    "pt": [
        "A ação da empresa subiu após a divulgação do relatório.",
        "Não sei se vou conseguir chegar a São Paulo a tempo.",
        "Coração, informação e educação terminam todos em -ção.",
    ],
    "pl_cs_tr_vi_is": [
        "Zażółć gęślą jaźń — to klasyczne polskie zdanie testowe.",
        "Příliš žluťoučký kůň úpěl ďábelské ódy.",
        "Pijamalı hasta yağız şoföre çabucak güvendi.",
        "Tiếng Việt có nhiều dấu: ả, ã, ạ, ầ, ẩ, ẫ, ậ, ơ, ư, đ.",
        "Þetta reddast, sagði Íslendingurinn og brosti.",
        "Ångström, Øresund og Æblegrød er danske og svenske ord.",
    ],
    "ru": [
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "В чащах юга жил бы цитрус? Да, но фальшивый экземпляр!",
        "Москва — столица России, а Київ — столиця України.",
        "Программисты любят кофе, особенно по понедельникам.",
        "Ёлка, ёжик и щука встретились на берегу реки.",
    ],
    "uk_sr_bg": [
        "Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
        "Љубазни фењерџија чађавог лица хоће да ми покаже штос.",
        "Жълтата дюля беше щастлива, че пухът, който цъфна, замръзна като гьон.",
    ],
    "el": [
        "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
        "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
        "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
        "Καλημέρα! Τι κάνεις σήμερα;",
    ],
    "ar": [
        "مرحبا بالعالم! كيف حالك اليوم؟",
        "اللغة العربية جميلة وغنية بالمفردات.",
        "ذهب الطالب إلى المكتبة لقراءة كتاب جديد.",
        "صِفْ خَلْقَ خَوْدٍ كَمِثْلِ الشَّمْسِ إِذْ بَزَغَتْ",
        "الرقم ١٢٣٤٥ مكتوب بالأرقام العربية الهندية.",
    ],
    "he": [
        "שלום עולם! מה שלומך היום?",
        "דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
        "עִבְרִית עִם נִקּוּד נִרְאֵית כָּךְ.",
    ],
    "hi_mr": [
        "नमस्ते दुनिया! आप कैसे हैं?",
        "भारत की राजधानी नई दिल्ली है।",
        "ऋषियों ने कहा: सत्यमेव जयते।",
        "संख्या १२३४ देवनागरी अंकों में लिखी गई है।",
        "मराठी भाषा महाराष्ट्रात बोलली जाते.",
    ],
    "bn_ta_ka": [
        "আমি বাংলায় গান গাই।",
        "தமிழ் ஒரு பழமையான மொழி.",
        "ಕನ್ನಡ ಭಾಷೆ ಸುಂದರವಾಗಿದೆ.",
    ],
    "th": [
        "สวัสดีครับ ยินดีต้อนรับสู่ประเทศไทย",
        "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
        "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    ],
    "zh": [
        "你好，世界！今天天气很好。",
        "我们一起去北京吃烤鸭吧。",
        "机器学习模型需要大量的数据进行训练。",
        "這是繁體中文的句子，用於測試。",
        "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。",
    ],
    "ja": [
        "こんにちは、世界！お元気ですか？",
        "東京タワーは赤と白の塔です。",
        "いろはにほへと ちりぬるを わかよたれそ つねならむ",
        "カタカナとひらがなと漢字を混ぜて書きます。",
        "ｶﾀｶﾅの半角もあります。",
    ],
    "ko": [
        "안녕하세요, 세계! 오늘 날씨가 좋네요.",
        "한국어는 한글로 씁니다.",
        "키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
    ],
    "other": [
        "ქართული ენა ძალიან ლამაზია.",
        "Բարեւ աշխարհ, ինչպես ես։",
        "ሰላም ለዓለም።",
        "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ᛫ᚠᛁᚱᚪ᛫ᚷᛖᚻᚹᛦᛚᚳᚢᛗ",
        "ꯃꯤꯇꯩ ꯂꯣꯟ and ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ scripts are rare in training data.",
        "𝔗𝔥𝔦𝔰 𝔦𝔰 𝔣𝔯𝔞𝔨𝔱𝔲𝔯 and 𝐛𝐨𝐥𝐝 and 𝓈𝒸𝓇𝒾𝓅𝓉.",
        "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　ｗｉｔｈ　ｉｄｅｏｇｒａｐｈｉｃ　ｓｐａｃｅｓ",
    ],
}

CODE = [
    "def fib(n: int) -> int:",
    "    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "#include <stdio.h>",
    "int main(int argc, char **argv) { printf(\"%s\\n\", argv[0]); return 0; }",
    "const add = (a, b) => a + b; console.log(add(2, 3));",
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); }",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<div class=\"container\"><a href=\"/home\">Home</a></div>",
    "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"ok\": true, \"n\": null}}",
    "if [ -z \"$HOME\" ]; then echo \"no home\" >&2; exit 1; fi",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens",
    "while (*p && *p != '\\0') p++;",
    "public static void main(String[] args) throws IOException {",
    "let mut map: HashMap<String, Vec<i64>> = HashMap::new();",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "\\frac{\\partial L}{\\partial w_{ij}} = \\sum_k \\delta_k x_i",
    "apiVersion: apps/v1\tkind: Deployment\tmetadata: {name: krill}",
    "git commit -m 'fix: handle EOF' && git push origin main",
    "a&&b||c; x<<=2; y>>=3; z **= 4; w //= 5; v ?:= 6;",
    "obj?.prop ?? defaultValue; arr?.[0]; fn?.();",
    "@decorator\nclass Foo(Bar, metaclass=ABCMeta): pass",
    "std::vector<std::pair<int, std::string>> v{{1, \"one\"}, {2, \"two\"}};",
    "#define MAX(a,b) ((a)>(b)?(a):(b))",
    "    \t\tindented_with_mixed_whitespace = True",
    "/* comment */ // another comment -- sql comment # shell comment",
    "0x7fffffff 0b101010 0o755 1e-9 3.14159f 6.022e23 .5 5.",
    "regex = r\"^(?P<user>[\\w.+-]+)@(?P<host>[\\w-]+\\.[\\w.-]+)$\"",
    "SELECT COUNT(*) AS n, AVG(price)::numeric(10,2) FROM orders GROUP BY 1;",
]

NUMBERS = [
    "1234567890", "12345678901234567890123456789012345678901234567890",
    "3.14159265358979323846", "1,234,567", "1.234.567,89", "-42", "+7", "1e10",
    "2.5e-3", "0.000001", "100%", "50/50", "1/3", "½ ¼ ¾", "² ³ ¹", "Ⅻ Ⅷ ⅻ",
    "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "①②③", "㊿", "𝟘𝟙𝟚",
    "$1,000,000.00", "€9,99", "£12.50", "¥100", "₹5,00,000", "₿0.0001",
    "+1 (555) 123-4567", "192.168.0.1", "::1", "v1.2.3-rc.4", "3:45:12.250",
]

DATES = [
    "2024-02-29", "2023-12-31T23:59:59Z", "1999-01-01 00:00:00+05:30", "12/25/2023",
    "25.12.2023", "31 déc. 2023", "Mon, 01 Jan 2024 10:00:00 GMT", "2024年5月1日",
    "2024년 5월 1일", "Q3 FY2025", "the 1st, 2nd, 3rd and 4th of July", "1970-01-01",
]

EMOJI = [
    "😀", "😂", "🥲", "👍", "👍🏻", "👍🏿", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "❤️", "❤", "🇺🇸",
    "🇯🇵", "🇩🇪🇫🇷", "1️⃣", "#️⃣", "🧑🏽‍🚀", "👩🏾‍❤️‍💋‍👨🏻", "✋🏼", "🫠", "🦀", "🐍", "☕",
    "™", "©", "®", "↔", "→", "★", "♥", "⚠️", "✅", "❌", "🔥🔥🔥", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
]

COMBINING = [
    "e\u0301", "a\u0300\u0301\u0302", "n\u0303", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324",
    "o\u0308", "c\u0327", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e4a", "\u05e9\u05c1\u05b8",
    "A\u030a", "i\u0307", "\u1100\u1161\u11a8", "q\u0323\u0307", "\u0041\u20dd", "x\u20e3",
]

WHITESPACE = [
    "  ", "   ", "    ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2003", "\u2009",
    "\u200b", "\u202f", "\u205f", "\u1680", "\u0085", "\u000b", "\u000c", "\r", "\u2028",
    "\u2029", "\ufeff", "\u200d", "\u180e", "\u00ad",
]

URLS = [
    "https://example.com/path/to/page?query=1&lang=en#section",
    "http://localhost:8080/api/v1/users/42",
    "ftp://ftp.example.org/pub/file.tar.gz",
    "mailto:someone@example.com", "user.name+tag@sub.domain.co.uk",
    "https://ja.wikipedia.org/wiki/東京", "www.google.com", "C:\\Users\\Public\\file.txt",
    "/usr/local/lib/python3.11/site-packages/", "s3://bucket/key/with spaces.json",
]

CONTRACTIONS = [
    "it's", "IT'S", "It's", "don't", "DON'T", "Don't", "we're", "WE'RE", "they've", "THEY'VE",
    "I'm", "I'M", "you'll", "YOU'LL", "he'd", "HE'D", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    "rock 'n' roll", "o'clock", "y'all'd've", "'tis", "'twas", "ma'am", "can’t", "won’t",
    "''", "'''", "'S", "'T", "'Re", "'rE", "'LL", "'Ll", "'lL", "'D", "'M", "'VE", "'Ve",
    "'sS", "'st", "'ss", "' s", "'\u0073", "'1", "'é",
]

SPECIAL = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<reponame>", "<file_sep>",
    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
    "<jupyter_script>", "<empty_output>", "<|im_start", "im_end|>", "<|endoftext",
    "<|unknown|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "<<SYS>>", "<|eot_id|>",
    "<|begin_of_text|>", "<|im_start|><|im_end|>", "<|im_<|im_end|>start|>",
]

SOUP_BLOCKS = [
    (0x0020, 0x007E), (0x00A0, 0x024F), (0x0250, 0x02FF), (0x0300, 0x036F),
    (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF),
    (0x0600, 0x06FF), (0x0900, 0x097F), (0x0980, 0x09FF), (0x0E00, 0x0E7F),
    (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
    (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F),
    (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F), (0x3040, 0x309F),
    (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
    (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF),
    (0x1F1E6, 0x1F1FF),
]


def soup(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(SOUP_BLOCKS)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF or cp == 0x0A:
            cp = 0x20
        out.append(chr(cp))
    return "".join(out)


def all_fragments():
    frags = []
    for lang in sorted(PROSE):
        frags += PROSE[lang]
    return frags + CODE + NUMBERS + DATES + EMOJI + COMBINING + URLS + CONTRACTIONS + SPECIAL


def mix(rng):
    pools = [all_fragments(), NUMBERS, DATES, EMOJI, COMBINING, WHITESPACE, URLS,
             CONTRACTIONS, SPECIAL, CODE]
    parts = []
    for _ in range(rng.randint(2, 7)):
        pool = rng.choice(pools)
        parts.append(rng.choice(pool))
        parts.append(rng.choice([" ", " ", " ", "", "  ", "\t", ", ", ". ", " - ", "\u00a0", "   "]))
    return "".join(parts)


def gen_lines(rng):
    lines = []
    # 1. every hand-written fragment on its own, then with a leading and a trailing space
    for f in all_fragments() + WHITESPACE:
        lines.append(f)
    for f in all_fragments():
        lines.append(" " + f)
        lines.append(f + "  ")
    # 2. whitespace shapes around words and digits
    for ws in WHITESPACE + ["", " "]:
        lines.append("word" + ws + "word")
        lines.append(ws + "lead")
        lines.append("trail" + ws)
        lines.append("12" + ws + "34")
        lines.append(ws + ws + "x" + ws + ws + ws)
    # control bytes and code points whose byte-level characters some vocabularies lack
    # (SmolLM2 has no token for bytes 04 06 13 14 16 1D C0 C1 F1 F2 F5..FF)
    lines += ["ctrl\x04\x06\x13\x14\x16\x1d chars", "\x04", "a\x13b", "nul\x00byte", "\x00", "del\x7f",
              "c1 \u0080\u0085\u0099\u009f end", "\U00040000 \U0007FFFF \U00080000 \U000BFFFF",
              "pua \U000F0000\U000FFFFD \U00100000\U0010FFFD", "\ue000\uf8ff private", "\ufffd\ufffe\uffff",
              "x\U00041234y\U00081234z", "\x01\x02\x03\x05\x07\x08\x0e\x0f\x10\x11\x12\x15\x17\x18\x19\x1a\x1b\x1c\x1e\x1f"]
    lines += ["", " ", "  ", "\t", "a", "A", "1", "'", "\"", "!", "?!", "...", "…", "—", "-" * 40,
              "=" * 80, "a" * 200, "ab" * 150, "1" * 300, "🙂" * 30, "。" * 20, " " * 64,
              "\t" * 20, "x" + " " * 33 + "y", "!!!???", "&&||", "<<>>", "{{}}", "[[]]"]
    # 3. number shapes
    for n in range(0, 2000, 37):
        lines.append(f"{n} {n * 1.5} {n:,} {-n} {n:08d} {n / 7:.4f} {n:x} #{n}")
    for k in range(1, 40):
        lines.append(str(rng.randint(10 ** (k - 1), 10 ** k)))
    # 4. contractions inside sentences
    subjects = ["it", "IT", "He", "SHE", "they", "THEY", "we", "You", "I"]
    for c in ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D"]:
        for s in subjects:
            lines.append(f"{s}{c} fine, {s.lower()}{c}{c} and {s.upper()} {c} done")
    # 5. special-token strings in context
    for sp in SPECIAL:
        lines.append(f"before{sp}after")
        lines.append(f"{sp}\nuser\nhello{sp}")
        lines.append(f" {sp} {sp}  {sp}")
        lines.append(f"<|im_start|>assistant\nThe answer is {sp}<|im_end|>")
    # 6. mixtures and soups
    while len(lines) < 2300:
        r = rng.random()
        if r < 0.55:
            lines.append(mix(rng))
        elif r < 0.85:
            lines.append(soup(rng, rng.randint(1, 60)))
        else:
            lines.append(mix(rng) + soup(rng, rng.randint(1, 20)) + mix(rng))
    # a case never holds '\n' (the file is line-based): show it as U+2424 instead
    return [ln.replace("\n", "\u2424") for ln in lines]


def gen_docs(rng):
    docs = []
    docs.append("\n".join(CODE[:6]) + "\n")
    docs.append("# Title\n\nSome *markdown* text.\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```\n")
    docs.append("line one\r\nline two\r\n\r\nline four\r\n")
    docs.append("\n\n\nleading newlines and trailing ones\n\n\n")
    docs.append("tabs\tand\t\tspaces   \n    indented\n\t\tdouble-tab\n \n")
    docs.append("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n")
    docs.append("")
    docs.append("\n")
    docs.append(" \n \n")
    docs.append("def f():\n    if x:\n        return 1\n\n\n    return 2\n")
    for lang in sorted(PROSE):
        docs.append("\n".join(PROSE[lang]) + "\n\n" + " ".join(PROSE[lang]))
    while len(docs) < 160:
        n = rng.randint(1, 12)
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.5:
                parts.append(mix(rng))
            elif r < 0.7:
                parts.append(soup(rng, rng.randint(1, 40)))
            else:
                parts.append(rng.choice(CODE))
            parts.append(rng.choice(["\n", "\n", "\n\n", " \n", "\n  ", "\r\n", "\n\t", "\n\n\n", "   \n\n "]))
        docs.append("".join(parts))
    for d in docs:
        assert DOC_SEPARATOR not in d
    return docs


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data", "tokenizer")
    os.makedirs(outdir, exist_ok=True)
    rng = random.Random(20251126)
    lines = gen_lines(rng)
    for ln in lines:
        assert "\n" not in ln
    with open(os.path.join(outdir, "corpus.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    docs = gen_docs(random.Random(7))
    with open(os.path.join(outdir, "docs.txt"), "w", encoding="utf-8", newline="") as f:
        for d in docs:  # each document is followed by "\n" + DOC_SEPARATOR + "\n"
            f.write(d + "\n" + DOC_SEPARATOR + "\n")
    print(f"corpus.txt: {len(lines)} lines; docs.txt: {len(docs)} documents")


if __name__ == "__main__":
    main()
