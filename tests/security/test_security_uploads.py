"""An upload cannot make the server read another file (issue 9, defect 1).

FFmpeg picks the demuxer from the content; some follow references to other
files or the network (concat and HLS playlists, SDP, ffmetadata, the tty text
reader). Before the fix a concat file naming a WAV in the upload temp folder
was transcribed: 200 with that other file's speech. Now only real audio and
video containers are opened, with the file protocol alone.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.core.errors import Malformed
from models.engines.whisper.audio_input import load_audio
from tests.api.test_asr import URL
from tests.support.speech import SHORT_TEXT, clip

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)


@pytest.fixture
def secret_wav() -> Iterator[Path]:
    """Speech in a WAV next to where uploads land (the system temp folder), as another request's upload would be."""
    path = Path(tempfile.gettempdir()) / f"aistack-upload-secret-{uuid.uuid4().hex[:8]}.wav"
    path.write_bytes(clip(SHORT_TEXT))
    yield path
    path.unlink(missing_ok=True)


def reference_files(target: Path) -> dict[str, bytes]:
    """Files whose demuxer would open `target` (or the network) if it were allowed to run."""
    return {
        "concat, relative name": f"ffconcat version 1.0\nfile '{target.name}'\n".encode(),
        "concat, absolute path": f"ffconcat version 1.0\nfile '{target}'\n".encode(),
        "concat through subfile": f"ffconcat version 1.0\nfile 'subfile,,start,0,end,0,,:{target}'\n".encode(),
        "hls playlist": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode(),
        "sdp (network stream)": b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                                b"m=audio 5004 RTP/AVP 0\r\n",
        "ffmetadata": b";FFMETADATA1\ntitle=x\n",
        "text read as ANSI art (tty)": b"\x1b[31mred text\x1b[0m\n" * 100,
    }


def test_reference_following_demuxers_are_refused_before_reading(secret_wav: Path, tmp_path: Path) -> None:
    for name, data in reference_files(secret_wav).items():
        path = Path(tempfile.gettempdir()) / f"aistack-upload-probe-{uuid.uuid4().hex[:8]}.txt"
        path.write_bytes(data)
        try:
            with pytest.raises(Malformed) as caught:
                load_audio(path, max_seconds=60)
            assert "not audio or video" in caught.value.message, name
        finally:
            path.unlink(missing_ok=True)
    assert load_audio(secret_wav, max_seconds=60).duration > 1  # the target itself is fine audio


def test_uploaded_playlists_are_400_not_another_files_speech(http: httpx.Client, secret_wav: Path) -> None:
    direct = http.post(URL, files={"file": ("secret.wav", secret_wav.read_bytes())})
    assert direct.status_code == 200 and "stella" in direct.json()["text"].lower()  # what a leak would show
    for name, data in reference_files(secret_wav).items():
        for filename in ("list.txt", "clip.wav"):  # the name the client gives changes nothing
            response = http.post(URL, files={"file": (filename, data)})
            assert response.status_code == 400, (name, response.text[:200])
            error = response.json()["error"]
            assert error["kind"] == "malformed" and "not audio or video" in error["message"], (name, error)


def test_no_upload_temp_files_are_left(http: httpx.Client, secret_wav: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob("aistack-upload-*"))
    for data in reference_files(secret_wav).values():
        http.post(URL, files={"file": ("list.txt", data)})
    assert set(Path(tempfile.gettempdir()).glob("aistack-upload-*")) <= before
