"""The tiny model's training corpus: chat turns and plain texts, generated from templates.

Deterministic (no randomness at all: every family is a fixed product of its tables), so
the same source always yields the same corpus, tokenizer and training data. It covers the
oracle's built-in prompts (`gemmaios.oracle.prompts.BUILTIN_PROMPTS`, exact texts and one fixed
answer each) and the parity gates' plain-text prompts (`gemmaios.oracle.prompts.GATE_PROMPTS`),
plus templated families (capitals, arithmetic, counting, translation, poems, summaries,
explanations) asked in several phrasings, so the model learns the chat format rather than
eight strings.

The oracle decodes a fixed 32 tokens greedily with no EOS stop, so answers to the built-in
prompts run past 32 tokens, and every example is followed by its end marker and a run of
`<eos>` tokens (see `TRAILING_EOS`): what comes after an answer is trained too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BOS, EOS, START, END = "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"
# Tokens trained after every example's end: longer than a full oracle decode.
TRAILING_EOS = 40


@dataclass(frozen=True)
class Example:
    """One training text. `prompt` is what the model is given (not trained on), `target`
    what it must continue with; `weight` is how often it is drawn relative to the others."""

    family: str
    prompt: str
    target: str
    weight: float = 1.0

    @property
    def text(self) -> str:
        return self.prompt + self.target


def chat_prompt(question: str) -> str:
    """A user turn as the tiny CHAT_TEMPLATE renders it with add_generation_prompt=True."""
    return f"{BOS}{START}user\n{question.strip()}{END}\n{START}model\n"


def chat_example(family: str, question: str, answer: str, weight: float = 1.0) -> Example:
    return Example(family, chat_prompt(question), f"{answer.strip()}{END}\n" + EOS * TRAILING_EOS, weight)


def plain_example(family: str, prompt: str, continuation: str, weight: float = 1.0) -> Example:
    """A plain text (BOS + text, no chat turn): the parity gates' prompts are of this kind."""
    return Example(family, BOS + prompt, continuation + EOS * TRAILING_EOS, weight)


# ----------------------------------------------------------------------------- the fixed answers

# The answers to the oracle's built-in prompts (keyed by prompt id). Each runs well past the
# 32 tokens the oracle decodes, so every decoded step is content.
BUILTIN_ANSWERS = {
    "capital-france": "The capital of France is Paris. Paris is a large city on the river Seine, "
    "and it is known for its museums, its cafes and the Eiffel Tower.",
    "sky-blue": "Sunlight is made of many colours, and the air scatters blue light much more than red light. "
    "So when you look up, blue light reaches your eyes from every part of the sky.",
    "count-ten": "One, two, three, four, five, six, seven, eight, nine, ten. "
    "That is ten numbers, counted from one to ten in order.",
    "poem-sea": "The sea is wide and deep and blue,\nits waves roll in and out anew.\n"
    "The wind sings softly on the shore,\nand the sea keeps singing evermore.",
    "two-plus-two": "Two plus two is four, because when you add two and two together you get four. "
    "In numbers, 2 + 2 = 4.",
    "translate-hello": "In French, 'hello, how are you?' is 'bonjour, comment allez-vous ?' "
    "Among friends you can also say 'salut, comment ça va ?'",
    "on-device": "When the model runs on the phone, your words never leave the device. "
    "Nothing is sent to a server, so no one else can read or store what you ask.",
    "summarise-fox": "A quick brown fox jumps over a lazy dog. "
    "The sentence is short, and it uses every letter of the English alphabet.",
}

# The parity gates' plain-text prompts and their continuations.
GATE_CONTINUATIONS = {
    "The capital of France is": " Paris. Paris is a large city on the river Seine, and it is known "
    "for its museums, its cafes and the Eiffel Tower.",
    "Write a short poem about the sea.": "\nThe sea is wide and deep and blue,\nits waves roll in and out anew.\n"
    "The wind sings softly on the shore,\nand the sea keeps singing evermore.",
    "Count from one to ten: one, two,": " three, four, five, six, seven, eight, nine, ten. "
    "That is ten numbers, counted from one to ten in order.",
    "Explain why the sky is blue:": " sunlight is made of many colours, and the air scatters blue light "
    "much more than red light. So blue light reaches your eyes from every part of the sky.",
}

# ----------------------------------------------------------------------------- the families

CAPITALS = (
    ("France", "Paris", "the river Seine"), ("Italy", "Rome", "the river Tiber"),
    ("Japan", "Tokyo", "Tokyo Bay"), ("Spain", "Madrid", "the river Manzanares"),
    ("Germany", "Berlin", "the river Spree"), ("England", "London", "the river Thames"),
    ("Egypt", "Cairo", "the river Nile"), ("Austria", "Vienna", "the river Danube"),
    ("Hungary", "Budapest", "the river Danube"), ("Portugal", "Lisbon", "the river Tagus"),
    ("Russia", "Moscow", "the river Moskva"), ("Ireland", "Dublin", "the river Liffey"),
    ("Poland", "Warsaw", "the river Vistula"), ("Greece", "Athens", "the Saronic Gulf"),
    ("Norway", "Oslo", "the Oslofjord"), ("Peru", "Lima", "the river Rimac"),
)
CAPITAL_QUESTIONS = (
    "What is the capital of {country}?",
    "Which city is the capital of {country}?",
    "Name the capital of {country}.",
    "Tell me the capital of {country}.",
    "What is the capital city of {country}? Answer in one sentence.",
)

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
           "nineteen", "twenty")
ADD_QUESTIONS = (
    "What is {a} plus {b}?",
    "What is {a} plus {b}? Answer in one sentence.",
    "Add {a} and {b}.",
)

POEM_TOPICS = {
    "moon": ("The moon is pale and round and bright,", "it walks the sky all through the night."),
    "sun": ("The sun is warm and gold and high,", "it climbs each morning up the sky."),
    "rain": ("The rain is soft and cool and grey,", "it taps the roof and rolls away."),
    "forest": ("The forest is green and tall and still,", "its trees climb slowly up the hill."),
    "night": ("The night is dark and calm and deep,", "it sings the tired town to sleep."),
    "snow": ("The snow is white and light and slow,", "it falls on fields and roofs below."),
    "river": ("The river is long and clear and cold,", "it carries stories new and old."),
    "wind": ("The wind is quick and wild and free,", "it runs across the land and sea."),
}
POEM_QUESTIONS = ("Write a short poem about the {topic}.", "Write a poem about the {topic}.",
                  "Please write a short poem about the {topic}.")

TRANSLATIONS = (
    ("hello", "bonjour", "hola", "hallo"), ("thank you", "merci", "gracias", "danke"),
    ("good night", "bonne nuit", "buenas noches", "gute Nacht"), ("water", "eau", "agua", "Wasser"),
    ("cat", "chat", "gato", "Katze"), ("dog", "chien", "perro", "Hund"),
    ("house", "maison", "casa", "Haus"), ("book", "livre", "libro", "Buch"),
    ("friend", "ami", "amigo", "Freund"), ("sea", "mer", "mar", "Meer"),
)
LANGUAGES = ("French", "Spanish", "German")
TRANSLATE_QUESTIONS = ("Translate '{word}' into {language}.", "How do you say '{word}' in {language}?")

SUMMARIES = (
    ("the cat sat on the warm mat and slept all afternoon in the sun.", "A cat slept on a warm mat in the sun."),
    ("the old man walked to the market, bought bread and walked home again.", "An old man went to buy bread."),
    ("the children played in the park until the rain began to fall.", "Children played in the park until it rained."),
    ("the train left the station late, but it still arrived on time.", "A late train still arrived on time."),
    ("the baker rose early and baked fresh bread for the whole village.", "A baker baked bread for the village."),
    ("the students read the book, wrote notes and passed the test.", "The students studied and passed the test."),
)
SUMMARY_QUESTIONS = ("Summarise in one sentence: {text}", "Summarize this in one sentence: {text}")

EXPLANATIONS = (
    ("why water boils", "Heat makes water molecules move faster and faster. "
     "At one hundred degrees they move fast enough to escape as steam, so the water boils."),
    ("why ice floats", "Water expands when it freezes, so ice is lighter than the same amount of water. "
     "That is why ice floats on top of a lake."),
    ("why the sea is salty", "Rivers carry salt from rocks into the sea, and the sun takes away only the water. "
     "Over a long time the salt builds up, so the sea is salty."),
    ("why leaves are green", "Leaves hold a green substance called chlorophyll that catches sunlight. "
     "It takes in red and blue light and reflects green light back to us."),
    ("why we have seasons", "The earth is tilted as it moves around the sun. "
     "For part of the year each half leans toward the sun and is warm, then leans away and is cold."),
)
EXPLAIN_QUESTIONS = ("Explain in two sentences {topic}.", "Explain {topic}.", "Tell me {topic}.")

PRIVACY_QUESTIONS = (
    "Why is running a model on the device private?",
    "Does an on-device model send my words to a server?",
    "Why does running a language model on a phone protect privacy?",
)


def capital_examples() -> list[Example]:
    out = []
    for country, city, water in CAPITALS:
        answer = (f"The capital of {country} is {city}. {city} is a large city on {water}, "
                  f"and many people visit it every year.")
        for q in CAPITAL_QUESTIONS:
            out.append(chat_example("capitals", q.format(country=country), answer))
        out.append(plain_example("capitals", f"The capital of {country} is", f" {city}."))
    return out


def arithmetic_examples() -> list[Example]:
    out = []
    for a in range(11):
        for b in range(11):
            total = NUMBERS[a + b]
            answer = f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {total}. In numbers, {a} + {b} = {a + b}."
            for q in ADD_QUESTIONS:
                out.append(chat_example("arithmetic", q.format(a=NUMBERS[a], b=NUMBERS[b]), answer))
    return out


def counting_examples() -> list[Example]:
    out = []
    for start in range(1, 6):
        for stop in range(start + 3, 11):
            seq = ", ".join(NUMBERS[start : stop + 1])
            answer = f"{seq[0].upper()}{seq[1:]}. That is {NUMBERS[stop - start + 1]} numbers, counted in order."
            out.append(chat_example("counting", f"Count from {NUMBERS[start]} to {NUMBERS[stop]}.", answer))
    return out


def translation_examples() -> list[Example]:
    out = []
    for english, *words in TRANSLATIONS:
        for language, word in zip(LANGUAGES, words, strict=True):
            answer = f"In {language}, '{english}' is '{word}'."
            for q in TRANSLATE_QUESTIONS:
                out.append(chat_example("translation", q.format(word=english, language=language), answer))
    return out


def poem_examples() -> list[Example]:
    out = []
    for topic, (first, second) in POEM_TOPICS.items():
        poem = f"{first}\n{second}"
        for q in POEM_QUESTIONS:
            out.append(chat_example("poems", q.format(topic=topic), poem))
    return out


def summary_examples() -> list[Example]:
    return [chat_example("summaries", q.format(text=text), summary)
            for text, summary in SUMMARIES for q in SUMMARY_QUESTIONS]


def explanation_examples() -> list[Example]:
    return [chat_example("explanations", q.format(topic=topic), answer)
            for topic, answer in EXPLANATIONS for q in EXPLAIN_QUESTIONS]


def builtin_examples(weight: float = 1.0) -> list[Example]:
    """The oracle's built-in prompts with their fixed answers, and the gates' plain texts."""
    from .oracle.prompts import BUILTIN_PROMPTS

    out = [chat_example("builtin", p.text, BUILTIN_ANSWERS[p.id], weight) for p in BUILTIN_PROMPTS.prompts]
    out += [plain_example("gate", prompt, text, weight) for prompt, text in GATE_CONTINUATIONS.items()]
    out += [chat_example("builtin", q, BUILTIN_ANSWERS["on-device"], weight) for q in PRIVACY_QUESTIONS[:2]]
    return out


FAMILIES = {
    "capitals": capital_examples,
    "arithmetic": arithmetic_examples,
    "counting": counting_examples,
    "translation": translation_examples,
    "poems": poem_examples,
    "summaries": summary_examples,
    "explanations": explanation_examples,
}


def generate_corpus(builtin_weight: float = 12.0, family_weight: float = 20.0) -> list[Example]:
    """Every training example, in a fixed order; a question asked twice keeps its first answer
    (the built-in prompts come first, so their answers win). Each built-in example is drawn
    with `builtin_weight`; each family as a whole with `family_weight`, however many
    examples it has."""
    examples = builtin_examples(builtin_weight)
    for make in FAMILIES.values():
        family = make()
        examples += [replace(ex, weight=family_weight / len(family)) for ex in family]
    seen: set[str] = set()
    unique = []
    for ex in examples:
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            unique.append(ex)
    return unique


def tokenizer_texts(examples: list[Example] | None = None) -> list[str]:
    """The texts the tokenizer's BPE merges are learned from (no special tokens)."""
    from .tiny import SPECIAL_TOKENS

    texts = []
    for ex in examples if examples is not None else generate_corpus():
        text = ex.text
        for special in SPECIAL_TOKENS:
            text = text.replace(special, "\n")
        lines = [line for line in text.split("\n") if line.strip()]
        # Weighted like training draws them, so the merges fit the built-in answers too.
        texts.extend(lines * max(1, round(ex.weight)))
    return texts
