"""Video files without a model: frames to a playable MP4, its poster frame, and back.

The MP4 is what every browser and phone plays: H.264 (libx264) in yuv420p, sides made
even (4:2:0 halves the colour planes), BT.709 colours tagged in the stream, and the index
(`moov`) moved to the front (`faststart`) so a player starts before the whole file is in.
PyAV does the work with the FFmpeg libraries its wheel ships: no system ffmpeg is needed.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from photogen_pipelines.errors import BadInput
from photogen_pipelines.imaging.images import png_bytes

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
BT709 = 1  # FFmpeg's AVCOL_SPC / AVCOL_PRI / AVCOL_TRC value for ITU-R BT.709
DEFAULT_CRF = 18  # visually lossless for x264; 23 is its default
MAX_READ_FRAMES = 10_000  # read_frames of an untrusted file stops here


@dataclass(frozen=True)
class VideoInfo:
    """What a player sees in an MP4, read back from the file."""

    codec: str
    pixel_format: str
    width: int
    height: int
    fps: Fraction
    frames: int

    @property
    def seconds(self) -> float:
        return float(self.frames / self.fps)


def mp4_bytes(frames: list[np.ndarray], fps: int | Fraction, *, crf: int = DEFAULT_CRF, preset: str = "medium") -> bytes:
    """An H.264 MP4 of `frames` (HxWx3 uint8 RGB, all one size) at `fps`. Odd sides lose
    their last row or column: yuv420p needs even ones."""
    if not frames:
        raise ValueError("an MP4 needs at least one frame")
    height, width = _even(frames[0].shape[0]), _even(frames[0].shape[1])
    if height < 2 or width < 2:
        raise ValueError(f"frames of {frames[0].shape[1]}x{frames[0].shape[0]} are too small for a video")
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {index} is not an HxWx3 uint8 RGB array")
        if frame.shape != frames[0].shape:
            raise ValueError(f"frame {index} is {frame.shape}, the first is {frames[0].shape}: one size for all")
    # faststart rewrites the file in a second pass, which FFmpeg does by reopening it by
    # name: a file in a private temporary folder, not a memory buffer
    with tempfile.TemporaryDirectory(prefix="photogen-video-") as folder:
        path = Path(folder) / "video.mp4"
        _encode(frames, path, fps, width, height, crf, preset)
        return path.read_bytes()


def _encode(frames: list[np.ndarray], path: Path, fps, width: int, height: int, crf: int, preset: str) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(CODEC, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, PIXEL_FORMAT
        # one encoder thread: x264's frame threads make the bytes depend on the core count,
        # and a few seconds of video encode in well under a second without them
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT709
        for rgb in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            picture = picture.reformat(format=PIXEL_FORMAT, dst_colorspace="ITU709")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)


def poster_png(frames: list[np.ndarray], index: int = 0) -> bytes:
    """The poster frame (the first by default) as a PNG, shown before the video plays."""
    if not frames:
        raise ValueError("a poster needs at least one frame")
    if not -len(frames) <= index < len(frames):
        raise ValueError(f"no frame {index} in a video of {len(frames)} frames")
    return png_bytes(frames[index], compress_level=6)


def probe(data: bytes) -> VideoInfo:
    """The MP4's video stream as a player reads it (its frames decoded and counted)."""
    return _decode(data, keep=False)[1]


def read_frames(data: bytes) -> list[np.ndarray]:
    """Every frame of an MP4's video stream, decoded to HxWx3 uint8 RGB."""
    return _decode(data, keep=True)[0]


def _decode(data: bytes, keep: bool) -> tuple[list[np.ndarray], VideoInfo]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise BadInput("the file has no video stream", code="not_a_video")
            stream = container.streams.video[0]
            frames, count = [], 0
            for frame in container.decode(stream):
                count += 1
                if count > MAX_READ_FRAMES:
                    raise BadInput(f"the video has more than {MAX_READ_FRAMES} frames", code="video_too_long")
                if keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
            info = VideoInfo(
                codec=stream.codec_context.name,
                pixel_format=stream.codec_context.format.name,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=Fraction(stream.average_rate) if stream.average_rate else Fraction(0),
                frames=count,
            )
    except av.error.FFmpegError as exc:
        raise BadInput(f"the file is not a readable video ({exc.strerror})", code="not_a_video") from None
    return frames, info


def sample_indices(count: int, n: int) -> list[int]:
    """`n` evenly spaced frame indices of `count` frames, the first and the last included
    (fewer when there are fewer frames)."""
    n = min(n, count)
    if n <= 0:
        return []
    if n == 1:
        return [0]
    return [round(i * (count - 1) / (n - 1)) for i in range(n)]


def sample_frames(frames: list[np.ndarray], n: int) -> list[np.ndarray]:
    """`n` evenly spaced frames, the first and the last included."""
    return [frames[i] for i in sample_indices(len(frames), n)]


def _even(side: int) -> int:
    return side - side % 2
