"""Encoding with PyAV: frames to a video file (the demo's clips, test videos), and the
re-encode of a source by a recipe (:data:`REENCODE`: CoViAR's; :class:`EncodeSettings`'
default: UCF101's own format, for footage whose codec exports no motion vectors).

Apart from the decoder (:mod:`moclip.video.codec`), so that an edit to the encoder reruns the
demo data and the re-encodes, never the caches of a run that re-encodes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from moclip.io import atomic_path
from moclip.video.codec import DecodeError, declared_frames, is_truncated, open_video


def encode_video(
    path: Path | str,
    frames,
    fps: int | Fraction = 25,
    codec: str = "mpeg4",
    gop: int = 12,
    bframes: int = 0,
    bit_rate: int = 1_500_000,
    options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> None:
    """Write RGB uint8 frames ``[H, W, 3]`` (or ``av.VideoFrame``s in ``pix_fmt``) as a video;
    MPEG-4 Part 2 gets UCF101's XVID tag in AVI.

    Used by the demo dataset, :func:`reencode` and the tests; the file is renamed into place
    only when complete.
    """

    path = Path(path)
    fmt = {".avi": "avi", ".mp4": "mp4", ".mkv": "matroska"}.get(path.suffix.lower())
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=fmt) as out:
        stream = None
        for i, img in enumerate(frames):
            if isinstance(img, av.VideoFrame):
                frame = img
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = frame.height, frame.width
                stream.pix_fmt = pix_fmt
                stream.bit_rate = bit_rate
                if codec == "mpeg4" and fmt == "avi":
                    stream.codec_tag = "XVID"
                stream.codec_context.thread_count = 1  # deterministic bytes for a seed
                stream.codec_context.gop_size = gop
                stream.codec_context.max_b_frames = bframes
                opts = {"bf": str(bframes)} if codec == "libx264" else {}
                stream.codec_context.options = {**opts, **(options or {})}
            frame.pts = i
            out.mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"{path}: no frames to encode")
        out.mux(stream.encode(None))


@dataclass(frozen=True)
class EncodeSettings:
    """How :func:`reencode` writes a video: codec, frame size (width, height; None keeps the
    source's), GOP length, B-frames, and quality: a constant quantiser, or else a bit rate."""

    codec: str = "mpeg4"
    size: tuple[int, int] | None = None
    gop: int = 12
    bframes: int = 0
    qscale: int | None = None  # MPEG-4 Part 2: 2 (finest of the encoder's default range) .. 31
    bit_rate: int = 1_500_000  # bits a second, when qscale is None


# The recipes of config dataset.reencode. CoViAR's (pytorch-coviar data/reencode.sh, FFmpeg
# 3.1.3): `ffmpeg -i in.avi -vf scale=340:256,setsar=1:1 -q:v 1 -c:v mpeg4 -f rawvideo out.mp4`,
# with FFmpeg's MPEG-4 defaults of GOP 12 and no B-frames, which its loader relies on (GOP
# index = frame // 12). -q:v 1 gives quantiser 2: the encoder's default qmin clips it. Pixels
# stay square (setsar=1:1) without asking here, and the file is AVI with the XVID tag.
REENCODE = {"coviar": EncodeSettings(codec="mpeg4", size=(340, 256), gop=12, bframes=0, qscale=2)}
# Scene-cut detection off (a threshold no frame reaches). It changes nothing measured: with
# these settings libavcodec's MPEG-4 encoder already keeps every GOP at `gop` frames across a
# hard cut (a splice of two demo clips cut at frame 29 re-encodes byte-identically with and
# without it, I-frames at 0, 12, 24, ...); it stays as a pin of the GOP that CoViAR relies on.
_FIXED_GOP = {"sc_threshold": "1000000000"}


def reencode(src: Path | str, dst: Path | str, settings: EncodeSettings = EncodeSettings()) -> int:
    """Re-encode ``src`` to ``dst`` (written atomically) by ``settings``; return its frame count.

    The default is UCF101's own format (MPEG-4 Part 2, GOP 12, no B-frames), for footage
    whose codec exports no vectors; :data:`REENCODE` holds CoViAR's, which also resizes.
    Every GOP is exactly ``gop`` frames. Raises :class:`DecodeError` for a source that cannot
    be read, or that decodes to fewer frames than its container declares (truncated).
    """
    src = Path(src)
    options = dict(_FIXED_GOP)
    if settings.qscale is not None:  # the frame's quality is left 0, so qmin = qmax fixes the quantiser
        options.update(flags="+qscale", qmin=str(settings.qscale), qmax=str(settings.qscale))
    with open_video(src) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        width, height = settings.size or (stream.codec_context.width, stream.codec_context.height)
        # MPEG-4 Part 2 allows a time base of at most 65535 ticks a second.
        rate = 1 / (1 / Fraction(stream.average_rate or stream.guessed_rate or 25)).limit_denominator(65535)
        declared = declared_frames(stream)
        reformatter = av.video.reformatter.VideoReformatter()
        n = 0

        def frames():
            nonlocal n
            try:
                for frame in container.decode(stream):
                    out = reformatter.reformat(
                        frame, width=width, height=height, format="yuv420p", interpolation="BICUBIC"
                    )
                    out.pict_type = av.video.frame.PictureType.NONE  # the source's I-frames must not force ours
                    out.time_base = 1 / rate  # encode_video numbers the frames 0, 1, ... at ``rate``
                    n += 1
                    yield out
            except av.error.FFmpegError as e:
                raise DecodeError(f"decoding failed after {n} frames: {e}") from None
            if n == 0:
                raise DecodeError("no frame could be decoded")
            if is_truncated(n, declared):
                raise DecodeError(f"truncated or corrupt: decoded {n} of the {declared} frames the container declares")

        encode_video(
            dst,
            frames(),
            fps=rate,
            codec=settings.codec,
            gop=settings.gop,
            bframes=settings.bframes,
            bit_rate=settings.bit_rate,
            options=options,
        )
    return n
