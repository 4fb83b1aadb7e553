"""Sentences for the demonstration model: Mandarin and English, digits, times,
dates, prices and everyday phrases, drawn from templates by a seeded generator.

Numbers are written as words (汉字 numerals, English words) because a
transcript must say what the voice said. The generator is deterministic for a
given seed; the held-out split is drawn first and the training split never
contains one of its sentences (nor one of the committed test sets' sentences).
"""

from __future__ import annotations

import random

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


def split(lang: str, n_test: int, n_train: int, seed: int, exclude: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Held-out sentences (distinct, template-drawn, never a fixed phrase) and
    training sentences (repeats allowed) that share no sentence with them."""
    r = random.Random(f"{seed}-{lang}")
    fixed = set(PHRASES_ZH if lang == "zh" else PHRASES_EN)
    test: list[str] = []
    while len(test) < n_test:
        s = SENTENCE[lang](r)
        if s not in fixed and s not in test and s not in exclude:
            test.append(s)
    banned = set(test) | set(exclude)
    train: list[str] = []
    while len(train) < n_train:
        s = SENTENCE[lang](r)
        if s not in banned:
            train.append(s)
    return test, train
