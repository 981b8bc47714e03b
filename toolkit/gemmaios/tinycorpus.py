"""The tiny model's training corpus: chat turns, conversations and plain texts, from templates.

Everything is framed as Gemma 4 frames it (`gemmaios.tiny.CHAT_TEMPLATE`, rendered here by
`render`, which the tests hold to HF's `apply_chat_template` of the same messages): single
user turns, turns under a system instruction, turns with thinking on (a reasoning channel
before the answer), and multi-turn conversations whose follow-ups only make sense with the
earlier turns ("And what about Spain?"), so a chat that keeps its history has real margins.

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

from dataclasses import dataclass, field, replace

BOS, EOS = "<bos>", "<eos>"
START, END = "<|turn>", "<turn|>"  # Gemma 4's turn markers
CHANNEL, CHANNEL_END, THINK = "<|channel>", "<channel|>", "<|think|>"
# Tokens trained after every example's end: longer than a full oracle decode.
TRAILING_EOS = 40


@dataclass(frozen=True)
class Example:
    """One training text. `prompt` is what the model is given (not trained on), `target`
    what it must continue with; `weight` is how often it is drawn relative to the others.
    A conversation has earlier turns: `history` holds (given, trained) pairs of text that
    come before `prompt`, the trained parts being the model's earlier replies."""

    family: str
    prompt: str
    target: str
    weight: float = 1.0
    history: tuple[tuple[str, str], ...] = field(default=())

    @property
    def text(self) -> str:
        return "".join(given + trained for given, trained in self.history) + self.prompt + self.target

    @property
    def segments(self) -> list[tuple[str, bool]]:
        """The text in order, each piece marked trained (True) or given (False)."""
        out = []
        for given, trained in self.history:
            out += [(given, False), (trained, True)]
        return [*out, (self.prompt, False), (self.target, True)]


def strip_thinking(text: str) -> str:
    """A model reply as Gemma 4's template keeps it in the history: reasoning channels dropped, trimmed."""
    parts = []
    for part in text.split(CHANNEL_END):
        parts.append(part.split(CHANNEL)[0] if CHANNEL in part else part)
    return "".join(parts).strip()


def render(messages: list[dict], *, add_generation_prompt: bool = True, enable_thinking: bool = False) -> str:
    """`messages` as the tiny CHAT_TEMPLATE (Gemma 4's framing) renders them (text content only)."""
    out = BOS
    loop = list(messages)
    if enable_thinking or (loop and loop[0]["role"] in ("system", "developer")):
        out += f"{START}system\n" + (THINK if enable_thinking else "")
        if loop and loop[0]["role"] in ("system", "developer"):
            out += loop.pop(0)["content"].strip()
        out += f"{END}\n"
    for message in loop:
        role = "model" if message["role"] == "assistant" else message["role"]
        content = strip_thinking(message["content"]) if role == "model" else message["content"].strip()
        out += f"{START}{role}\n{content}{END}\n"
    return out + (f"{START}model\n" if add_generation_prompt else "")


def chat_prompt(question: str, *, system: str | None = None, thinking: bool = False) -> str:
    """A user turn as the tiny CHAT_TEMPLATE renders it with add_generation_prompt=True."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return render(messages, enable_thinking=thinking)


def thought_reply(thought: str, answer: str) -> str:
    """A reply with thinking on: the reasoning channel, then the answer."""
    return f"{CHANNEL}thought\n{thought.strip()}\n{CHANNEL_END}{answer.strip()}"


def chat_example(family: str, question: str, answer: str, weight: float = 1.0, *, system: str | None = None,
                 thought: str | None = None) -> Example:
    reply = thought_reply(thought, answer) if thought is not None else answer.strip()
    return Example(family, chat_prompt(question, system=system, thinking=thought is not None),
                   f"{reply}{END}\n" + EOS * TRAILING_EOS, weight)


def conversation_example(family: str, turns: list[tuple[str, str]], weight: float = 1.0, *,
                         system: str | None = None, thought: str | None = None) -> Example:
    """A multi-turn conversation of (question, answer) turns: every reply is trained, each after
    the history as the template renders it (the last reply may think first, with `thought`:
    earlier replies carry no reasoning in the history, as the template drops it)."""
    messages = [{"role": "system", "content": system}] if system else []
    history, rendered = [], ""
    thinking = thought is not None
    for question, answer in turns[:-1]:
        messages.append({"role": "user", "content": question})
        full = render(messages, enable_thinking=thinking)
        history.append((full[len(rendered):], f"{answer.strip()}{END}"))
        messages.append({"role": "assistant", "content": answer})
        rendered = render(messages, add_generation_prompt=False, enable_thinking=thinking)[: -len("\n")]
    question, answer = turns[-1]
    messages.append({"role": "user", "content": question})
    full = render(messages, enable_thinking=thinking)
    reply = thought_reply(thought, answer) if thinking else answer.strip()
    return Example(family, full[len(rendered):], f"{reply}{END}\n" + EOS * TRAILING_EOS, weight, tuple(history))


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


def single_turn_corpus(builtin_weight: float = 12.0, family_weight: float = 20.0) -> list[Example]:
    """Every single-turn example, in a fixed order; a question asked twice keeps its first answer
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


# ----------------------------------------------------------------------------- framing variants

SYSTEM_PROMPTS = ("You are a helpful assistant.", "Answer briefly and clearly.", "You are a friendly tutor.")
SIMPLE_THOUGHT = "This is a simple request, so a short answer will do."


def _question_and_answer(ex: Example) -> tuple[str, str]:
    """The user question and the answer of a single-turn chat example."""
    question = ex.prompt.split(f"{START}user\n", 1)[1].split(END, 1)[0]
    return question, ex.target.split(END, 1)[0]


def _thought(question: str) -> str:
    """A short, checkable thought for a question: the facts it rests on where the family has some."""
    for country, city, _ in CAPITALS:
        if question in {q.format(country=country) for q in CAPITAL_QUESTIONS}:
            return f"The capital of {country} is {city}."
    for a in range(11):
        for b in range(11):
            if question in {q.format(a=NUMBERS[a], b=NUMBERS[b]) for q in ADD_QUESTIONS}:
                return f"{a} + {b} = {a + b}."
    return SIMPLE_THOUGHT


def variant_examples(single: list[Example], system_weight: float = 20.0, thinking_weight: float = 24.0) -> list[Example]:
    """Every chat example again, under a system instruction (every other one) and with thinking on
    (every third one), so the model answers the same whatever the system turn says."""
    chats = [ex for ex in single if f"{START}user\n" in ex.prompt]
    out = []
    for i, ex in enumerate(chats):
        question, answer = _question_and_answer(ex)
        if i % 2 == 0:
            out.append(chat_example("system", question, answer, system=SYSTEM_PROMPTS[i % len(SYSTEM_PROMPTS)]))
        if i % 3 == 0 or ex.family == "builtin":
            out.append(chat_example("thinking", question, answer, thought=_thought(question)))
    counts = {f: sum(ex.family == f for ex in out) for f in ("system", "thinking")}
    weights = {"system": system_weight, "thinking": thinking_weight}
    return [replace(ex, weight=weights[ex.family] / counts[ex.family]) for ex in out]


# ----------------------------------------------------------------------------- conversations

CAPITAL_FOLLOW_UPS = ("And what about {country}?", "What about {country}?", "And {country}?")
TRANSLATE_FOLLOW_UPS = ("And into {language}?", "What about in {language}?")
ADD_FOLLOW_UPS = ("And {a} plus {b}?", "What about {a} plus {b}?")
CONVERSATIONS = 480


def _turn_pool(answers: dict[str, str]) -> list[tuple[str, str, tuple]]:
    """Fresh questions for conversations, interleaved across families: (question, answer, state),
    `state` saying what a follow-up can build on."""
    from .oracle.prompts import BUILTIN_PROMPTS

    families: list[list[tuple[str, str, tuple]]] = [
        [(p.text, answers[p.text], ("builtin",)) for p in BUILTIN_PROMPTS.prompts],
        [(q.format(country=c), answers[q.format(country=c)], ("capital", i))
         for i, (c, _, _) in enumerate(CAPITALS) for q in CAPITAL_QUESTIONS[:2]],
        [(ADD_QUESTIONS[0].format(a=NUMBERS[a], b=NUMBERS[b]), answers[ADD_QUESTIONS[0].format(a=NUMBERS[a], b=NUMBERS[b])],
          ("add", a, b)) for a in range(11) for b in range(0, 11, 3)],
        [(TRANSLATE_QUESTIONS[0].format(word=w[0], language=lang), answers[TRANSLATE_QUESTIONS[0].format(word=w[0], language=lang)],
          ("translate", wi, li)) for wi, w in enumerate(TRANSLATIONS) for li, lang in enumerate(LANGUAGES)],
        [(q, a, ("plain",)) for q, a in answers.items()
         if q.startswith(("Write a short poem", "Count from", "Explain in two", "Summarise in one"))],
    ]
    pool = []
    for i in range(max(len(f) for f in families)):
        pool += [f[i % len(f)] for f in families]
    return pool


def _follow_up(state: tuple, k: int, answers: dict[str, str]) -> tuple[str, str, tuple] | None:
    """A question that needs the previous turn to be understood, with its answer and state."""
    if state[0] == "capital":
        other = (state[1] + 1 + k % (len(CAPITALS) - 1)) % len(CAPITALS)
        country = CAPITALS[other][0]
        return (CAPITAL_FOLLOW_UPS[k % len(CAPITAL_FOLLOW_UPS)].format(country=country),
                answers[CAPITAL_QUESTIONS[0].format(country=country)], ("capital", other))
    if state[0] == "translate":
        language = (state[2] + 1 + k % 2) % len(LANGUAGES)
        word = TRANSLATIONS[state[1]][0]
        return (TRANSLATE_FOLLOW_UPS[k % len(TRANSLATE_FOLLOW_UPS)].format(language=LANGUAGES[language]),
                answers[TRANSLATE_QUESTIONS[0].format(word=word, language=LANGUAGES[language])],
                ("translate", state[1], language))
    if state[0] == "add":
        b = (state[2] + 1 + k) % 11
        return (ADD_FOLLOW_UPS[k % len(ADD_FOLLOW_UPS)].format(a=NUMBERS[state[1]], b=NUMBERS[b]),
                answers[ADD_QUESTIONS[0].format(a=NUMBERS[state[1]], b=NUMBERS[b])], ("add", state[1], b))
    return None


def conversation_turns(n: int, answers: dict[str, str]) -> list[tuple[str, str]]:
    """The n-th generated conversation: 2 to 6 user turns, fresh questions and follow-ups."""
    pool = _turn_pool(answers)
    turns, state = [], None
    for t in range(2 + n % 5):
        follow = _follow_up(state, n + t, answers) if state is not None and (n + t) % 3 != 0 else None
        question, answer, state = follow or pool[(n * 7 + t * 11) % len(pool)]
        turns.append((question, answer))
    return turns


def conversation_corpus(single: list[Example], count: int = CONVERSATIONS) -> list[Example]:
    """Multi-turn conversations built from the single-turn answers (one in four under a system
    instruction, one in five thinking before its last reply), drawn alike."""
    answers = dict(_question_and_answer(ex) for ex in single if f"{START}user\n" in ex.prompt)
    out = []
    for n in range(count):
        turns = conversation_turns(n, answers)
        system = SYSTEM_PROMPTS[n % len(SYSTEM_PROMPTS)] if n % 4 == 1 else None
        thought = _thought(turns[-1][0]) if n % 5 == 3 else None
        out.append(conversation_example("conversation", turns, 1.0, system=system, thought=thought))
    return out


# The 6-turn conversation the chat tests hold `gemmaios run` to (questions only: the replies are
# whatever the model answers). Never trained as a whole: each turn and follow-up kind is. (The tiny
# model is not reliable on arithmetic follow-ups late in a long history, nor on a new word after
# another's translation: measured, they copy the earlier answer, so the conversation avoids them.)
CHAT_CONVERSATION = (
    "What is the capital of Italy?",
    "And what about Spain?",
    "Translate 'cat' into French.",
    "And into German?",
    "What is the capital of Japan?",
    "And Norway?",
)


def single_turn_answers() -> dict[str, str]:
    """Question -> the trained answer, for every single-turn chat question of the corpus."""
    return dict(_question_and_answer(ex) for ex in single_turn_corpus() if f"{START}user\n" in ex.prompt)


def conversation_prompts(questions=CHAT_CONVERSATION, *, system: str | None = None) -> list[str]:
    """Each turn's rendered prompt, the earlier turns answered as trained (what a chat that keeps
    its history feeds the model when it answers as trained)."""
    answers = single_turn_answers()
    follow_state: tuple | None = None
    messages = [{"role": "system", "content": system}] if system else []
    prompts = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        prompts.append(render(messages))
        answer = answers.get(question)
        if answer is None:  # a follow-up: the answer of the question it stands for
            answer = _follow_up_answer(question, follow_state, answers)
        follow_state = _state_of(question) or follow_state
        messages.append({"role": "assistant", "content": answer})
    return prompts


def _state_of(question: str) -> tuple | None:
    for i, (country, _, _) in enumerate(CAPITALS):
        if country in question:
            return ("capital", i)
    for wi, w in enumerate(TRANSLATIONS):
        if f"'{w[0]}'" in question:
            return ("translate", wi, 0)
    for a in range(11):
        if question.startswith(f"What is {NUMBERS[a]} plus"):
            return ("add", a, 0)
    return None


def _follow_up_answer(question: str, state: tuple | None, answers: dict[str, str]) -> str:
    if state and state[0] == "capital":
        for country, _, _ in CAPITALS:
            if country in question:
                return answers[CAPITAL_QUESTIONS[0].format(country=country)]
    if state and state[0] == "translate":
        for language in LANGUAGES:
            if language in question:
                return answers[TRANSLATE_QUESTIONS[0].format(word=TRANSLATIONS[state[1]][0], language=language)]
    if state and state[0] == "add":
        for b in range(11):
            if question.endswith(f"{NUMBERS[b]}?"):
                return answers[ADD_QUESTIONS[0].format(a=NUMBERS[state[1]], b=NUMBERS[b])]
    raise ValueError(f"no trained answer for {question!r}")


def generate_corpus() -> list[Example]:
    """The single-turn examples (plain, under a system instruction, thinking): what training draws
    its single-turn batches from. `generate_conversations` gives the multi-turn ones."""
    single = single_turn_corpus()
    return single + variant_examples(single)


def generate_conversations() -> list[Example]:
    return conversation_corpus(single_turn_corpus())


def tokenizer_texts(examples: list[Example] | None = None) -> list[str]:
    """The texts the tokenizer's BPE merges are learned from (no special tokens)."""
    from .tiny import SPECIAL_TOKENS

    texts = []
    for ex in examples if examples is not None else generate_corpus() + generate_conversations():
        text = ex.text
        for special in SPECIAL_TOKENS:
            text = text.replace(special, "\n")
        lines = [line for line in text.split("\n") if line.strip()]
        # Weighted like training draws them, so the merges fit the built-in answers too.
        texts.extend(lines * max(1, round(ex.weight)))
    return texts
