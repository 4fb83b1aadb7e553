"""Sentences for the demonstration model, Mandarin and English, drawn by seeded generators.

- Templates: digits, times, dates, prices and everyday phrases (the first model's whole corpus;
  the old held-out sets are template instances).
- Broad text: word sequences drawn by frequency from real word lists (training/wordlists.py),
  so the model learns sounds, not sentences.
- Compositions: numbers, times, dates, money and quantities in varied spoken forms, domain words
  and word runs, in any order.
- Open held-out sentences: compositions whose every adjacent pair of pieces (two words, a word
  and an expression, ...) occurs nowhere in the training text.

Numbers are written as words (汉字 numerals, English words) because a transcript must say
what the voice said. Every generator is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import math
import random
from functools import lru_cache

from funasr_qwen4b.text import cer_text, normalize

from . import wordlists

ZH_DIGITS = "零一二三四五六七八九"
WEEKDAYS_ZH = ["一", "二", "三", "四", "五", "六", "日"]
PERIODS_ZH = ["早上", "上午", "中午", "下午", "晚上"]
CITIES_ZH = ["北京", "上海", "广州", "深圳", "杭州", "南京", "武汉", "成都", "西安", "天津", "重庆", "苏州"]
ITEMS_ZH = ["衣服", "外套", "帽子", "鞋子", "书包", "雨伞", "手机", "茶杯"]
THINGS_ZH = ["手续", "业务", "登记", "退款", "签证"]
ACTIVITIES_ZH = ["开会", "上课", "出发", "见面", "吃饭", "考试", "上班", "回家"]
WEATHER_ZH = ["晴朗", "多云", "下雨", "阴天", "有雪", "有风"]
PLACES_ZH = ["图书馆", "博物馆", "体育馆", "银行", "医院", "超市", "邮局", "公园"]
PHRASES_ZH = [
    "请保持安静。", "谢谢大家。", "欢迎光临。", "请排队等候。", "祝你生日快乐。", "请出示您的证件。",
    "下一站是终点站。", "请注意安全。", "我们马上就到。", "没有问题。", "请稍等一下。", "对不起，我来晚了。",
    "请把门关上。", "我想喝一杯水。", "这里不能吸烟。", "请系好安全带。", "你好，很高兴认识你。", "再见，明天见。",
]

MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December"]
WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CITIES_EN = ["London", "Paris", "Boston", "Chicago", "Dallas", "Denver", "Seattle", "Berlin", "Madrid", "Tokyo"]
ITEMS_EN = ["coat", "hat", "book", "ticket", "lamp", "chair", "watch", "bag"]
ACTIVITIES_EN = ["the meeting", "the class", "lunch", "the exam", "the flight", "the concert"]
WEATHER_EN = ["sunny", "cloudy", "rainy", "windy", "cold", "warm"]
PLACES_EN = ["library", "museum", "bank", "hospital", "market", "post office", "park", "station"]
PHRASES_EN = [
    "Please keep quiet.", "Thank you all.", "Welcome to our store.", "Please wait in line.",
    "Happy birthday to you.", "Please show your ticket.", "The next stop is the last stop.",
    "Please be careful.", "We will be there soon.", "No problem at all.", "Please wait a moment.",
    "Sorry I am late.", "Please close the door.", "I would like a glass of water.", "Please fasten your seat belt.",
    "Nice to meet you.", "See you tomorrow.", "Good morning everyone.",
]
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
             "nine": "ninth", "twelve": "twelfth"}


def zh_number(n: int) -> str:
    """0..9999 in Mandarin numerals (十五, 一百零三, 二千零五十)."""
    if n < 10:
        return ZH_DIGITS[n]
    if n < 20:
        return "十" + (ZH_DIGITS[n % 10] if n % 10 else "")
    out, zero = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d:
            out += ("零" if zero and out else "") + ZH_DIGITS[d] + unit
            zero = False
        elif out:
            zero = True
    return out


def zh_digits(s: str) -> str:
    return "".join(ZH_DIGITS[int(c)] for c in s)


def en_number(n: int) -> str:
    """0..999 in English words."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return _ONES[n // 100] + " hundred" + (" and " + en_number(rest) if rest else "")


def en_ordinal(n: int) -> str:
    words = en_number(n)
    head, _, last = words.rpartition("-")
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}-{last}" if head else last


def en_time(r: random.Random) -> str:
    h, m = r.randint(1, 12), r.choice([0, 5, 10, 15, 20, 25, 30, 40, 45, 50])
    return en_number(h) + (" o'clock" if m == 0 else (" oh " + en_number(m) if m < 10 else " " + en_number(m)))


def zh_sentence(r: random.Random) -> str:
    k = r.randrange(13)
    hour = lambda: r.choice(["两"] + [zh_number(i) for i in range(1, 13) if i != 2])  # noqa: E731
    minute = lambda: r.choice(["", "半"] + [zh_number(m) + "分" for m in range(5, 60, 5)])  # noqa: E731
    if k == 0:
        return f"现在是{r.choice(PERIODS_ZH)}{hour()}点{minute()}。"
    if k == 1:
        return f"今天是{zh_number(r.randint(1, 12))}月{zh_number(r.randint(1, 31))}日，星期{r.choice(WEEKDAYS_ZH)}。"
    if k == 2:
        return f"开放时间：早上{hour()}点至{r.choice(['下午', '晚上'])}{hour()}点。"
    if k == 3:
        return f"请在{zh_number(r.randint(1, 30))}号窗口办理{r.choice(THINGS_ZH)}。"
    if k == 4:
        return f"火车将于{hour()}点{minute()}到达{r.choice(CITIES_ZH)}。"
    if k == 5:
        return f"会议室在{zh_number(r.randint(2, 40))}楼，有{zh_number(r.randint(6, 120))}个座位。"
    if k == 6:
        return f"我的电话号码是{zh_digits('1' + ''.join(r.choice('0123456789') for _ in range(10)))}。"
    if k == 7:
        return f"这件{r.choice(ITEMS_ZH)}{zh_number(r.randint(10, 2000))}元。"
    if k == 8:
        return f"明天{r.choice(PERIODS_ZH)}{hour()}点{r.choice(ACTIVITIES_ZH)}。"
    if k == 9:
        return f"今天{r.choice(WEATHER_ZH)}，气温{zh_number(r.randint(0, 39))}度。"
    if k == 10:
        return f"{r.choice(PLACES_ZH)}星期{r.choice(WEEKDAYS_ZH)}闭馆。"
    if k == 11:
        return f"{zh_digits(str(r.randint(1990, 2030)))}年{zh_number(r.randint(1, 12))}月{zh_number(r.randint(1, 28))}日。"
    return r.choice(PHRASES_ZH)


def en_sentence(r: random.Random) -> str:
    k = r.randrange(12)
    if k == 0:
        return f"It is {en_time(r)} in the {r.choice(['morning', 'afternoon', 'evening'])}."
    if k == 1:
        return f"Today is {r.choice(WEEKDAYS_EN)}, {r.choice(MONTHS_EN)} {en_ordinal(r.randint(1, 31))}."
    if k == 2:
        return (f"Open from {en_number(r.randint(6, 11))} in the morning "
                f"to {en_number(r.randint(1, 10))} in the {r.choice(['afternoon', 'evening'])}.")
    if k == 3:
        return f"Please go to window number {en_number(r.randint(1, 30))}."
    if k == 4:
        return f"The train to {r.choice(CITIES_EN)} leaves at {en_time(r)} from platform {en_number(r.randint(1, 12))}."
    if k == 5:
        return f"The meeting room is on floor {en_number(r.randint(2, 40))} with {en_number(r.randint(6, 120))} seats."
    if k == 6:
        return "My phone number is " + " ".join(en_number(r.randint(0, 9)) for _ in range(7)) + "."
    if k == 7:
        return f"This {r.choice(ITEMS_EN)} costs {en_number(r.randint(2, 999))} dollars."
    if k == 8:
        return f"It is {r.choice(WEATHER_EN)} today and the temperature is {en_number(r.randint(0, 39))} degrees."
    if k == 9:
        return f"Please call me back at {en_time(r)}."
    if k == 10:
        return f"The {r.choice(PLACES_EN)} is closed on {r.choice(WEEKDAYS_EN)}."
    return r.choice(PHRASES_EN)


SENTENCE = {"zh": zh_sentence, "en": en_sentence}


def heldout(lang: str, n: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """The template held-out sentences (distinct, never a fixed phrase), drawn exactly as the
    committed zh_heldout/en_heldout sets were."""
    r = random.Random(f"{seed}-{lang}")
    fixed = set(PHRASES_ZH if lang == "zh" else PHRASES_EN)
    test: list[str] = []
    while len(test) < n:
        s = SENTENCE[lang](r)
        if s not in fixed and s not in test and s not in exclude:
            test.append(s)
    return test


# --- numbers, times, dates, money and quantities in varied spoken forms -------------------

def _magnitude(r: random.Random, top: int) -> int:
    """1..top, log-uniform: as many two-digit numbers as five-digit ones."""
    return min(top, int(10 ** r.uniform(0, math.log10(top + 1))))


def zh_large(n: int) -> str:
    """0..99999999 in Mandarin numerals (十二万零五百, 一万零一十五)."""
    if n < 10000:
        return zh_number(n)
    high, low = divmod(n, 10000)
    if not low:
        return zh_number(high) + "万"
    tail = "一" + zh_number(low) if 10 <= low < 20 else zh_number(low)  # 十五 is 一十五 after a larger unit
    return zh_number(high) + "万" + ("零" if low < 1000 else "") + tail


def zh_count(n: int, r: random.Random) -> str:
    """A number before a measure word: 两 for 2, and half the time for a leading 二 of 百/千/万."""
    if n == 2:
        return "两"
    s = zh_large(n)
    if s[0] == "二" and s[1:2] in ("百", "千", "万") and r.random() < 0.5:
        return "两" + s[1:]
    return s


ZH_DAYPARTS = ["早上", "上午", "中午", "下午", "晚上", "凌晨", "傍晚", "半夜"]
ZH_MEASURED = [("个", ["人", "小时", "星期", "月", "问题", "苹果"]), ("张", ["票", "桌子", "照片"]),
               ("本", ["书", "杂志"]), ("辆", ["车", "公交车"]), ("家", ["商店", "饭店", "公司"]),
               ("件", ["衣服", "事情"]), ("杯", ["水", "咖啡", "茶"]), ("只", ["猫", "狗", "鸟"]), ("位", ["客人", "老师"])]
ZH_UNITS = ["公里", "公斤", "米", "厘米", "分钟", "天", "年", "岁", "度", "页", "层", "次", "倍"]


def zh_clock(r: random.Random) -> str:
    h, m = r.randint(1, 12), r.randint(1, 59)
    hour = "两" if h == 2 else zh_number(h)
    minutes = "零" + ZH_DIGITS[m] if m < 10 else zh_number(m)
    forms = [f"{hour}点", f"{hour}点半", f"{hour}点一刻", f"{hour}点三刻", f"{hour}点{minutes}分", f"{hour}点{minutes}",
             f"差{r.choice(['五分', '十分', '一刻'])}{hour}点", f"{hour}点整"]
    if r.random() < 0.2:  # the 24-hour clock
        return f"{zh_number(r.randint(13, 23))}点{minutes}分"
    return (r.choice(ZH_DAYPARTS) if r.random() < 0.5 else "") + r.choice(forms)


def zh_date(r: random.Random) -> str:
    year = zh_digits(str(r.randint(1950, 2049))) + "年"
    month, day = zh_number(r.randint(1, 12)) + "月", zh_number(r.randint(1, 31))
    weekday = (r.choice(["星期", "礼拜"]) + r.choice(WEEKDAYS_ZH + ["天"]) if r.random() < 0.7
               else "周" + r.choice(WEEKDAYS_ZH))
    near = r.choice(["今天", "明天", "后天", "昨天", "前天", "上周", "下周", "这个月", "下个月", "去年", "明年"])
    return r.choice([f"{year}{month}{day}日", f"{month}{day}号", f"{month}{day}日", weekday, f"{month}{day}日{weekday}",
                     near, year + month, f"{near}{weekday}"])


def zh_quantity(r: random.Random) -> str:
    n, k = _magnitude(r, 9999), r.randrange(8)
    if k == 0:
        return zh_large(_magnitude(r, 99999999))
    if k == 1:
        return f"{zh_number(r.randint(0, 999))}点{zh_digits(str(r.randint(1, 99)))}"
    if k == 2:
        return f"百分之{zh_number(r.randint(1, 100))}"
    if k == 3:
        den = r.randint(2, 10)
        return f"{zh_number(den)}分之{zh_number(r.randint(1, den - 1))}"
    if k == 4:
        return f"第{zh_number(r.randint(1, 200))}"
    if k == 5:
        measure, nouns = r.choice(ZH_MEASURED)
        return f"{zh_count(n, r)}{measure}{r.choice(nouns)}"
    if k == 6:
        return f"零下{zh_number(r.randint(1, 30))}度"
    return f"{zh_count(n, r)}{r.choice(ZH_UNITS)}"


def zh_money(r: random.Random) -> str:
    y, j = zh_count(_magnitude(r, 9999), r), r.randint(1, 9)
    mao = "两" if j == 2 else ZH_DIGITS[j]
    return r.choice([f"{y}元", f"{y}块", f"{y}块钱", f"{y}块{ZH_DIGITS[j]}", f"{y}块{mao}毛", f"{y}元{mao}角",
                     f"{mao}毛钱"])


def zh_code(r: random.Random) -> str:
    """Phone, room and bus numbers, read digit by digit (1 as 幺 half the time in a phone number)."""
    k = r.randrange(3)
    if k == 0:
        phone = zh_digits("1" + "".join(r.choice("0123456789") for _ in range(10)))
        return phone.replace("一", "幺") if r.random() < 0.5 else phone
    if k == 1:
        return zh_digits(str(r.randint(101, 2999))) + r.choice(["房间", "号房", "室"])
    return zh_number(r.randint(1, 999)) + "路"


def en_large(n: int) -> str:
    """0..999999999 in English words (two thousand and five, four million three hundred thousand)."""
    if n < 1000:
        return en_number(n)
    for value, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= value:
            head, rest = divmod(n, value)
            return en_large(head) + " " + name + ((" and " if rest < 100 else " ") + en_large(rest) if rest else "")


def _counted(n: int, one: str, many: str) -> str:
    return f"one {one}" if n == 1 else f"{en_large(n)} {many}"


def en_year(y: int, r: random.Random) -> str:
    if 2000 <= y < 2010 or (y >= 2010 and r.random() < 0.3):
        return "two thousand" + (" and " + en_number(y - 2000) if y > 2000 else "")
    hi, lo = divmod(y, 100)
    return en_number(hi) + " " + (en_number(lo) if lo >= 10 else f"oh {en_number(lo)}" if lo else "hundred")


EN_COUNTED = [("person", "people"), ("ticket", "tickets"), ("book", "books"), ("minute", "minutes"), ("hour", "hours"),
              ("day", "days"), ("week", "weeks"), ("year", "years"), ("kilometer", "kilometers"),
              ("kilogram", "kilograms"), ("mile", "miles"), ("meter", "meters"), ("degree", "degrees"),
              ("page", "pages"), ("floor", "floors"), ("room", "rooms"), ("car", "cars"), ("cup", "cups")]
EN_FRACTIONS = ["one half", "a half", "one third", "two thirds", "a quarter", "three quarters", "one fifth",
                "nine tenths"]


def en_clock(r: random.Random) -> str:
    h, m = r.randint(1, 12), r.randint(1, 59)
    hour, after = en_number(h), en_number(h % 12 + 1)
    minutes = f"oh {en_number(m)}" if m < 10 else en_number(m)
    return r.choice([f"{hour} o'clock", f"{hour} {minutes}", f"half past {hour}", f"a quarter past {hour}",
                     f"a quarter to {after}", f"{en_number(r.randint(2, 29))} minutes past {hour}",
                     f"{r.choice(['five', 'ten', 'twenty', 'twenty-five'])} to {after}", r.choice(["noon", "midnight"]),
                     f"{hour} {minutes} in the {r.choice(['morning', 'afternoon', 'evening'])}"])


def en_date(r: random.Random) -> str:
    month, day, weekday = r.choice(MONTHS_EN), en_ordinal(r.randint(1, 31)), r.choice(WEEKDAYS_EN)
    year = en_year(r.randint(1950, 2049), r)
    return r.choice([f"{month} {day}", f"{month} the {day}", f"the {day} of {month}", f"{weekday} the {day}",
                     f"{month} {day}, {year}", f"{weekday}, {month} {day}", year,
                     f"{r.choice(['last', 'next', 'this'])} {weekday}"])


def en_quantity(r: random.Random) -> str:
    k = r.randrange(7)
    if k == 0:
        return en_large(_magnitude(r, 999_999_999))
    if k == 1:
        return f"{en_number(r.randint(0, 999))} point " + " ".join(_ONES[int(c)] for c in str(r.randint(1, 99)))
    if k == 2:
        return f"{en_number(r.randint(1, 100))} percent"
    if k == 3:
        return r.choice(EN_FRACTIONS)
    if k == 4:
        return "the " + en_ordinal(r.randint(1, 200))
    if k == 5:
        return f"minus {en_number(r.randint(1, 30))} degrees"
    return _counted(_magnitude(r, 9999), *r.choice(EN_COUNTED))


def en_money(r: random.Random) -> str:
    d, c = _magnitude(r, 9999), r.randint(1, 99)
    cents = en_number(c) + " cents"
    return r.choice([_counted(d, "dollar", "dollars"), _counted(d, "dollar", "dollars") + " and " + cents,
                     f"{en_number(r.randint(1, 99))} {en_number(c) if c >= 10 else 'oh ' + en_number(c)}", cents,
                     _counted(d, *r.choice([("pound", "pounds"), ("euro", "euros")]))])


def en_code(r: random.Random) -> str:
    """Phone and room numbers, digit by digit: zero or oh, and "double five" half the time."""
    if r.random() < 0.3:
        return f"{r.choice(['room', 'gate', 'platform', 'bus', 'flight'])} {en_number(r.randint(1, 999))}"
    digits, zero, out, i = [r.randrange(10) for _ in range(r.randint(4, 10))], r.choice(["zero", "oh"]), [], 0
    while i < len(digits):
        word = zero if digits[i] == 0 else _ONES[digits[i]]
        double = i + 1 < len(digits) and digits[i + 1] == digits[i] and r.random() < 0.5
        out.append("double " + word if double else word)
        i += 2 if double else 1
    return " ".join(out)


EXPRESSIONS = {"zh": (zh_clock, zh_date, zh_quantity, zh_money, zh_code),
               "en": (en_clock, en_date, en_quantity, en_money, en_code)}
# Everyday words of the domain that the frequency lists (news and web text) rank too low to keep.
EVERYDAY_ZH = ["超市", "药店", "机场", "车站", "地铁站", "火车站", "饭店", "咖啡馆", "商场", "学校", "办公室", "停车场",
               "电影院", "酒店", "房间", "厨房", "门口", "雨伞", "行李", "护照", "钥匙", "钱包", "眼镜", "地图", "车票",
               "预约", "取消", "延误", "到达", "起飞", "排队", "付款", "打折", "退货", "看病", "挂号", "买菜", "打车",
               "下雨", "刮风", "降温", "堵车", "医生", "护士", "司机", "服务员", "经理", "同事", "邻居", "朋友"]
EVERYDAY_EN = ["supermarket", "pharmacy", "airport", "subway", "restaurant", "cafe", "mall", "school", "office",
               "parking lot", "cinema", "hotel", "kitchen", "umbrella", "luggage", "passport", "keys", "wallet",
               "glasses", "map", "appointment", "cancel", "delayed", "arrival", "departure", "boarding", "queue",
               "payment", "discount", "refund", "doctor", "dentist", "nurse", "driver", "waiter", "manager",
               "colleague", "neighbor", "breakfast", "dinner", "traffic", "weather", "breeze", "rain", "snow",
               "tomorrow", "tonight", "weekend"]
DOMAIN = {"zh": CITIES_ZH + PLACES_ZH + ACTIVITIES_ZH + ITEMS_ZH + WEATHER_ZH + THINGS_ZH + EVERYDAY_ZH,
          "en": CITIES_EN + PLACES_EN + ACTIVITIES_EN + ITEMS_EN + WEATHER_EN + EVERYDAY_EN}


# --- broad text and compositions ------------------------------------------------------

# The held-out sets' draws ∝ count**0.6: mid-frequency words are heard too, not only the top few
# hundred. Training draws with its own exponent (data.Recipe.word_exponent).
WORD_EXPONENT = 0.6


@lru_cache(maxsize=None)
def _word_table(lang: str, exponent: float = WORD_EXPONENT) -> tuple[tuple[str, ...], tuple[float, ...]]:
    words, counts = wordlists.load(lang)
    if lang == "en":  # the list is lower case; the pronoun is not
        words = tuple("I" + w[1:] if w == "i" or w.startswith("i'") else w for w in words)
    return words, tuple(itertools.accumulate(c ** exponent for c in counts))


def words(lang: str, r: random.Random, n: int, exponent: float = WORD_EXPONENT) -> list[str]:
    """n listed words drawn ∝ count**exponent."""
    table, cum = _word_table(lang, exponent)
    return r.choices(table, cum_weights=cum, k=n)


# One-character words drawn ∝ count**0.3: the rare ones are heard too. Out of a word, a Mandarin
# syllable is told from its namesakes by its tone alone (方/房/访/放).
ONE_CHAR_EXPONENT = 0.3


@lru_cache(maxsize=None)
def _one_char_table() -> tuple[tuple[str, ...], tuple[float, ...]]:
    chosen = [(w, c) for w, c in zip(*wordlists.load("zh")) if len(w) == 1]
    return tuple(w for w, _ in chosen), tuple(itertools.accumulate(c ** ONE_CHAR_EXPONENT for _, c in chosen))


def one_char_words(r: random.Random, n: int) -> list[str]:
    table, cum = _one_char_table()
    return r.choices(table, cum_weights=cum, k=n)


def pieces(lang: str, r: random.Random, n: int, exponent: float = WORD_EXPONENT) -> list[str]:
    """n draws, each an expression (40 %), a domain word (20 %) or a run of 1-3 words (one piece
    each, drawn ∝ count**exponent)."""
    out: list[str] = []
    for _ in range(n):
        u = r.random()
        if u < 0.4:
            out.append(r.choice(EXPRESSIONS[lang])(r))
        elif u < 0.6:
            out.append(r.choice(DOMAIN[lang]))
        else:
            out += words(lang, r, r.randint(1, 3), exponent)
    return out


def join(lang: str, parts: list[str]) -> str:
    if lang == "zh":
        return "".join(parts) + "。"
    s = " ".join(parts)
    return s[0].upper() + s[1:] + "."


def train_sentence(lang: str, r: random.Random, template_share: float, broad_share: float,
                   one_char_share: float = 0.0, exponent: float = WORD_EXPONENT) -> str:
    """A template instance, a word sequence, a sequence of one-character words (Mandarin), or a
    composition; listed words drawn ∝ count**exponent."""
    u = r.random()
    if u < template_share:
        return SENTENCE[lang](r)
    if u < template_share + broad_share:
        return join(lang, words(lang, r, r.randint(3, 10), exponent))
    if u < template_share + broad_share + one_char_share:
        return join(lang, one_char_words(r, r.randint(3, 10)))
    return join(lang, pieces(lang, r, r.randint(2, 5), exponent))


# --- open held-out sentences: pairs of pieces training never has -------------------------

def tokens(lang: str, text: str) -> tuple[str, ...]:
    """What pairs are matched on: the scored characters (Mandarin) or words (English)."""
    return tuple(cer_text(text)) if lang == "zh" else tuple(normalize(text).split())


def _flat(lang: str, toks: tuple[str, ...]) -> str:
    return "".join(toks) if lang == "zh" else f" {' '.join(toks)} "


class Pairs:
    """Token sequences (adjacent pieces of held-out sentences) looked for inside other sentences."""

    def __init__(self, lang: str, keys: set[tuple[str, ...]]):
        self.lang, self.by_first = lang, {}
        for k in sorted(keys):
            self.by_first.setdefault(k[0], []).append(k)

    def found_in(self, text: str) -> bool:
        t = tokens(self.lang, text)
        return any(t[i:i + len(k)] == k for i, tok in enumerate(t) for k in self.by_first.get(tok, ()))


# At most this many scored characters (Mandarin) or words (English) in an open sentence: a
# sentence's length, and within the decoder's token cap (5 a second, at least 30) at any speed.
OPEN_MAX_TOKENS = {"zh": 20, "en": 14}


def open_heldout(lang: str, n: int, seed: int, shares: tuple[float, float], probe: int = 20000,
                 exclude: set[str] = frozenset()) -> tuple[list[str], set[tuple[str, ...]]]:
    """n compositions of 3-5 draws, and the token sequences of their adjacent pieces. A candidate
    is refused when one of those pairs occurs in `probe` training-like sentences (another seed),
    so the pairs are rare in any training text; training then refuses every sentence holding one."""
    compositions, keys = open_pieces(lang, n, seed, shares, probe, exclude)
    return [join(lang, parts) for parts in compositions], keys


def open_pieces(lang: str, n: int, seed: int, shares: tuple[float, float], probe: int = 20000,
                exclude: set[str] = frozenset()) -> tuple[list[list[str]], set[tuple[str, ...]]]:
    """open_heldout's sentences as their pieces (where training.analyse finds the junctions)."""
    pr = random.Random(f"{seed}-{lang}-probe")
    seen = "|".join(_flat(lang, tokens(lang, train_sentence(lang, pr, *shares))) for _ in range(probe))
    r = random.Random(f"{seed}-{lang}-open")
    out: list[list[str]] = []
    texts: set[str] = set()
    keys: set[tuple[str, ...]] = set()
    while len(out) < n:
        parts = pieces(lang, r, r.randint(3, 5))
        text = join(lang, parts)
        mine = {tokens(lang, join(lang, parts[i:i + 2])) for i in range(len(parts) - 1)}
        if (len(tokens(lang, text)) <= OPEN_MAX_TOKENS[lang] and text not in exclude and text not in texts
                and not any(_flat(lang, k) in seen for k in mine)):
            out.append(parts)
            texts.add(text)
            keys |= mine
    return out, keys


def junction_words(lang: str, compositions: list[list[str]]) -> set[tuple[str, ...]]:
    """English: the two words that meet at each junction of two pieces ("... cents" + "men ...":
    ("cents", "men")), which training must not say together either; Mandarin text has no word
    boundaries, so its pairs are the pieces' own (open_pieces' keys)."""
    if lang == "zh":
        return set()
    return {(tokens(lang, a)[-1], tokens(lang, b)[0]) for parts in compositions for a, b in itertools.pairwise(parts)}


def training(lang: str, n: int, seed: int, shares: tuple[float, ...], banned: set[str], pairs: Pairs,
             exponent: float) -> list[str]:
    """n training sentences (repeats allowed; listed words drawn ∝ count**exponent), none in
    `banned`, none holding one of `pairs`."""
    r = random.Random(f"{seed}-{lang}-train")
    out: list[str] = []
    while len(out) < n:
        s = train_sentence(lang, r, *shares, exponent)
        if s not in banned and not pairs.found_in(s):
            out.append(s)
    return out
