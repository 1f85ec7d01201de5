"""Deterministic generator of video-like synthetic panoptic scenes ("shapes").

A clip is a static camera looking at three *stuff* regions -- sky on top, ground
below a (possibly tilted, wavy) horizon, and a road (a perspective wedge or a
horizontal band) cut into the ground -- and at 2-6 *things* (circles, squares and
equilateral triangles) that move across the frame with near-constant velocity,
rotate, occlude each other in a fixed z-order, and enter and leave the frame.
Every thing keeps its identity (``track_id``, 1-based, unique in the clip) for its
whole lifetime, also while it is hidden.

Everything is derived from the clip's seed with numpy Generators: the layout and the
object schedule when the clip is built, and each frame's noise from ``(seed, frame)``,
so ``Clip(seed).frame(i)`` is the same whatever frames were rendered before.

Panoptic ground truth follows COCO panoptic conventions: an ``uint32`` segment-id map
(0 = VOID) and a list of segments ``{id, category_id, iscrowd, area, bbox, track_id}``.
Stuff segment ids are ``category_id + 1``; thing segment ids are ``1000 + track_id``.
A thing whose visible part is smaller than ``MIN_THING_AREA`` pixels (at 640x360,
scaled with the frame area) is too small to annotate: its pixels are VOID and it has no
segment (PQ ignores predictions that fall mostly on VOID).

Example::

    clip = Clip(7)                 # 640x360, 180 frames at 15 fps
    f = clip.frame(0)              # f.rgb (360, 640, 3) uint8, f.ids (360, 640) uint32, f.segments
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import numpy as np

# --- label set ---------------------------------------------------------------------------------

#: The label set, in the format of ``segstream::model::Label`` (configs/labels/shapes.json).
LABELS: list[dict] = [
    {"id": 0, "name": "sky", "isthing": False, "color": [70, 130, 180]},
    {"id": 1, "name": "ground", "isthing": False, "color": [107, 142, 35]},
    {"id": 2, "name": "road", "isthing": False, "color": [128, 64, 128]},
    {"id": 3, "name": "circle", "isthing": True, "color": [220, 20, 60]},
    {"id": 4, "name": "square", "isthing": True, "color": [0, 0, 230]},
    {"id": 5, "name": "triangle", "isthing": True, "color": [250, 170, 30]},
]
SKY, GROUND, ROAD, CIRCLE, SQUARE, TRIANGLE = range(6)
STUFF_IDS = (SKY, GROUND, ROAD)
THING_IDS = (CIRCLE, SQUARE, TRIANGLE)
NUM_CLASSES = len(LABELS)

VOID = 0
THING_ID_BASE = 1000
MIN_THING_AREA = 64  # pixels at 640x360; scaled with the frame area

# --- seeds ---------------------------------------------------------------------------------------
# Three disjoint seed spaces. The sample video is one clip with an integer seed; held-out and
# training clips use 3-tuples whose first element is a tag, so no training clip can be the
# sample clip or a held-out clip whatever the numbers passed.

SAMPLE_SEED = 7
HELDOUT_SEED = 1
HELDOUT_TAG = 0x5E6A1  # "held-out" clips: (HELDOUT_TAG, seed, k)
TRAIN_TAG = 0x7A1C     # training clips:   (TRAIN_TAG, seed, k)

REF_W, REF_H = 640, 360
HELDOUT_CLIP_FRAMES = 60


def heldout_seeds(seed: int = HELDOUT_SEED, num_frames: int = 200, per_clip: int = 20,
                  clip_frames: int = HELDOUT_CLIP_FRAMES) -> list[tuple[tuple[int, ...], int]]:
    """(clip seed, frame index) pairs of the held-out set: ``per_clip`` evenly spaced frames
    from each of ``ceil(num_frames / per_clip)`` clips of ``clip_frames`` frames."""
    if num_frames < 1 or per_clip < 1 or clip_frames < per_clip:
        raise ValueError("need num_frames >= 1 and clip_frames >= per_clip >= 1")
    out = []
    step = clip_frames // per_clip
    k = 0
    while len(out) < num_frames:
        for j in range(per_clip):
            if len(out) == num_frames:
                break
            out.append(((HELDOUT_TAG, int(seed), k), j * step))
        k += 1
    return out


def heldout_frames(items):
    """The frames of ``heldout_seeds()`` pairs, in order, building each clip once (the pairs of
    one clip are consecutive)."""
    clip = None
    for cseed, fi in items:
        if clip is None or tuple(clip.seed) != tuple(cseed):
            clip = Clip(cseed, num_frames=HELDOUT_CLIP_FRAMES)
        yield clip.frame(fi)


def train_seed(seed: int, k: int) -> tuple[int, int, int]:
    """Seed of the k-th training clip of training run ``seed``."""
    return (TRAIN_TAG, int(seed), int(k))


def _entropy(seed) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        return [int(seed)]
    seq = [int(s) for s in seed]
    if not seq or any(s < 0 for s in seq):
        raise ValueError(f"seed must be a non-negative int or a non-empty sequence of them, got {seed!r}")
    return seq


def _rng(seed, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed), spawn_key=tuple(key)))


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic encoding: id = R + 256 G + 256^2 B."""
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _hsv2rgb(h: float, s: float, v: float) -> np.ndarray:
    """h in [0, 360), s, v in [0, 1] -> float RGB in [0, 255]."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    m = v - c
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return (np.array([r, g, b]) + m) * 255.0


def _lerp_coords(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.linspace(0.5, cells + 0.5, n, dtype=np.float32)
    i0 = np.floor(pos).astype(np.intp)
    return i0, (pos - i0).astype(np.float32)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled (separably)."""
    g = rng.uniform(-1, 1, size=(cells_y + 2, cells_x + 2)).astype(np.float32)
    x0, fx = _lerp_coords(w, cells_x)
    rows = g[:, x0] * (1 - fx) + g[:, x0 + 1] * fx          # (cells_y + 2, w)
    y0, fy = _lerp_coords(h, cells_y)
    fy = fy[:, None]
    return rows[y0] * (1 - fy) + rows[y0 + 1] * fy


# --- objects -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Thing:
    track_id: int
    category_id: int
    size: float          # circle: radius; square: half side; triangle: circumradius (pixels)
    birth: int           # first frame it is alive (inclusive)
    death: int           # first frame it is gone (exclusive end)
    p0: tuple[float, float]   # centre at frame `birth`
    v: tuple[float, float]    # pixels per frame
    angle0: float        # radians
    omega: float         # radians per frame
    wobble_amp: float    # pixels, perpendicular to v
    wobble_freq: float   # radians per frame
    wobble_phase: float
    z: float             # drawing order: larger is in front
    color: np.ndarray    # float RGB
    color2: np.ndarray
    texture: int         # 0 flat, 1 stripes, 2 shading, 3 checker
    tex_period: float
    tex_angle: float
    tex_amp: float

    @property
    def radius(self) -> float:
        """Radius of the circle circumscribing the shape."""
        return self.size * math.sqrt(2.0) if self.category_id == SQUARE else self.size

    def bound(self) -> float:
        """Radius of a circle around the shape, wobble included."""
        return self.radius + self.wobble_amp + 1.0

    def pose(self, f: int) -> tuple[float, float, float]:
        t = f - self.birth
        vx, vy = self.v
        sp = math.hypot(vx, vy) or 1.0
        w = self.wobble_amp * math.sin(self.wobble_freq * t + self.wobble_phase)
        cx = self.p0[0] + vx * t - vy / sp * w
        cy = self.p0[1] + vy * t + vx / sp * w
        return cx, cy, self.angle0 + self.omega * t

    def alive(self, f: int) -> bool:
        return self.birth <= f < self.death


@dataclasses.dataclass
class Frame:
    index: int
    rgb: np.ndarray          # (H, W, 3) uint8
    ids: np.ndarray          # (H, W) uint32 segment ids, 0 = VOID
    segments: list[dict]     # COCO panoptic segments_info (+ track_id)
    objects: list[dict]      # every alive thing: track_id, category_id, centre, angle, size, z, area

    @property
    def track_ids(self) -> dict[int, int]:
        """segment id -> track id, for the things in this frame."""
        return {s["id"]: s["track_id"] for s in self.segments if s["track_id"] is not None}

    def panoptic_png(self) -> np.ndarray:
        return id2rgb(self.ids)


class Clip:
    """A synthetic clip. ``seed`` is a non-negative int or a sequence of them."""

    MAX_THINGS = 6
    MIN_THINGS = 3  # alive (bounding box overlaps the frame); keeps >= 2 visible nearly always

    def __init__(self, seed=SAMPLE_SEED, width: int = REF_W, height: int = REF_H,
                 num_frames: int = 180, fps: float = 15.0):
        for name, val, lo in (("width", width, 64), ("height", height, 64), ("num_frames", num_frames, 1)):
            if not isinstance(val, (int, np.integer)) or val < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
        if not (fps > 0):
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.seed = seed
        self._entropy = _entropy(seed)
        self.width, self.height = int(width), int(height)
        self.num_frames = int(num_frames)
        self.fps = float(fps)
        self.scale = min(self.width / REF_W, self.height / REF_H)
        self.min_thing_area = max(1, int(round(MIN_THING_AREA * self.width * self.height / (REF_W * REF_H))))
        rng = _rng(self._entropy, 0)
        self._build_background(rng)
        self.things: list[Thing] = []
        self._simulate(rng)

    # -- stuff --------------------------------------------------------------------------------

    def _build_background(self, rng: np.random.Generator) -> None:
        W, H = self.width, self.height
        xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
        ys = np.arange(H, dtype=np.float32)[:, None] + 0.5
        # horizon: tilted line plus a gentle wave
        h0 = rng.uniform(0.28, 0.48) * H
        tilt = rng.uniform(-0.08, 0.08)
        wave_a = rng.uniform(0.0, 0.035) * H
        wave_p = rng.uniform(0.6, 1.6) * W
        wave_ph = rng.uniform(0, 2 * np.pi)
        # float64 here: float32 np.sin differs across SIMD code paths, and the horizon decides GT pixels
        x64 = np.arange(W, dtype=np.float64)[None, :] + 0.5
        horizon = h0 + (x64 - W / 2) * tilt + wave_a * np.sin(2 * np.pi * x64 / wave_p + wave_ph)  # (1, W)
        sky = ys < horizon
        # road
        road_kind = int(rng.integers(0, 2))
        if road_kind == 0:  # perspective wedge from a vanishing point on the horizon
            vx = rng.uniform(0.3, 0.7) * W
            cx = rng.uniform(0.2, 0.8) * W
            hw = rng.uniform(0.14, 0.28) * W
            t = np.clip((ys - h0) / (H - h0), 0, None)
            xc = vx + (cx - vx) * t
            road = (~sky) & (np.abs(xs - xc) < hw * t)
            self._road = dict(kind=0, vx=vx, cx=cx, hw=hw, h0=h0)
        else:  # a horizontal band, slightly tilted
            top = h0 + rng.uniform(0.12, 0.3) * (H - h0)
            thick = rng.uniform(0.2, 0.38) * (H - h0)
            rt = rng.uniform(-0.06, 0.06)
            y1 = top + (xs - W / 2) * rt
            road = (~sky) & (ys >= y1) & (ys < y1 + thick)
            self._road = dict(kind=1, top=top, thick=thick, tilt=rt)
        stuff = np.where(sky, SKY, np.where(road, ROAD, GROUND)).astype(np.uint8)
        self.stuff_map = stuff
        self._stuff_ids = (stuff.astype(np.uint32) + 1)

        # colours and textures
        sky_top = _hsv2rgb(rng.uniform(195, 235), rng.uniform(0.35, 0.75), rng.uniform(0.6, 0.95))
        sky_hor = _hsv2rgb(rng.uniform(185, 225), rng.uniform(0.1, 0.35), rng.uniform(0.85, 1.0))
        if rng.random() < 0.6:  # green
            gcol = _hsv2rgb(rng.uniform(75, 140), rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.65))
        else:  # brown / tan
            gcol = _hsv2rgb(rng.uniform(20, 45), rng.uniform(0.3, 0.65), rng.uniform(0.35, 0.7))
        grey = rng.uniform(70, 125)
        rcol = np.array([grey, grey, grey]) + rng.uniform(-6, 6, size=3)
        self._base_colors = {SKY: (sky_top + sky_hor) / 2, GROUND: gcol, ROAD: rcol}

        # ground: low-frequency texture; road: grain + blotches; sky: vertical gradient (clouds
        # are added per frame, they drift)
        gf = _smooth_field(rng, H, W, 6, 10) * 0.6 + _smooth_field(rng, H, W, 24, 40) * 0.4
        img = gcol.astype(np.float32)[None, None, :] * (1 + 0.22 * gf[..., None])
        rf = 7 * rng.standard_normal((H, W), dtype=np.float32) + 10 * _smooth_field(rng, H, W, 8, 14)
        img[road] = rcol.astype(np.float32)[None, :] + rf[road][:, None]
        ty = np.clip(ys / np.maximum(horizon, 1.0), 0, 1)  # (H, W)
        tys = ty[sky][:, None]
        img[sky] = sky_top.astype(np.float32)[None, :] * (1 - tys) + sky_hor.astype(np.float32)[None, :] * tys
        self._bg = img
        self._sky = sky
        self._sky_rows = int(np.flatnonzero(sky.any(axis=1))[-1]) + 1 if sky.any() else 0
        self._road_mask = road
        # clouds: a wide field that drifts horizontally
        self._cloud_w = W * 2
        cl = _smooth_field(rng, H, self._cloud_w, 4, 14)
        self._clouds = np.clip(cl * 1.6 - 0.35, 0, 1).astype(np.float32) * rng.uniform(0.3, 0.8)
        self._cloud_speed = rng.uniform(3, 15) * self.scale / self.fps
        # lane markings
        self._lane_color = np.array([235, 235, 225.0]) if rng.random() < 0.6 else np.array([230, 190, 40.0])
        self._lane_speed = rng.uniform(0.0, 1.0)  # periods per second
        self._noise_sigma = rng.uniform(2.0, 5.0)

    def _lanes(self, f: int) -> np.ndarray:
        """Boolean mask of the dashed lane marking at frame f (inside the road)."""
        W, H = self.width, self.height
        xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
        ys = np.arange(H, dtype=np.float32)[:, None] + 0.5
        r = self._road
        phase = f * self._lane_speed / self.fps
        if r["kind"] == 0:
            t = np.clip((ys - r["h0"]) / (H - r["h0"]), 1e-3, None)
            xc = r["vx"] + (r["cx"] - r["vx"]) * t
            along = (1.0 / t) * 0.9 + phase  # perspective: dashes shrink towards the horizon
            m = (np.abs(xs - xc) < 0.012 * W * t + 0.3) & (np.mod(along, 1.0) < 0.5)
        else:
            y1 = r["top"] + (xs - W / 2) * r["tilt"]
            yc = y1 + r["thick"] / 2
            period = 0.12 * W
            m = (np.abs(ys - yc) < max(1.0, 0.012 * H)) & (np.mod(xs / period + phase, 1.0) < 0.5)
        return m & self._road_mask

    # -- things -------------------------------------------------------------------------------

    def _new_thing(self, rng: np.random.Generator, f: int, entering: bool) -> Thing:
        W, H, s = self.width, self.height, self.scale
        cat = int(rng.choice(THING_IDS))
        if cat == CIRCLE:
            size = rng.uniform(30, 70) * s
        elif cat == SQUARE:
            size = rng.uniform(27, 62) * s  # half side
        else:
            size = rng.uniform(40, 88) * s  # circumradius
        speed = rng.uniform(25, 80) * s / self.fps
        wob = rng.uniform(0, 6) * s
        if entering:
            edge = int(rng.integers(0, 4))  # 0 left, 1 right, 2 top, 3 bottom
            inward = [0.0, np.pi, np.pi / 2, -np.pi / 2][edge]
            ang = inward + rng.uniform(-0.9, 0.9)
            rad = size * math.sqrt(2.0) if cat == SQUARE else size
            off = rng.uniform(-0.5, 0.3) * rad  # centre just outside or inside the edge
            if edge == 0:
                p = (-off, rng.uniform(0.1, 0.9) * H)
            elif edge == 1:
                p = (W + off, rng.uniform(0.1, 0.9) * H)
            elif edge == 2:
                p = (rng.uniform(0.1, 0.9) * W, -off)
            else:
                p = (rng.uniform(0.1, 0.9) * W, H + off)
        else:
            ang = rng.uniform(0, 2 * np.pi)
            p = (rng.uniform(0.05, 0.95) * W, rng.uniform(0.05, 0.95) * H)
        v = (speed * math.cos(ang), speed * math.sin(ang))
        # appearance: saturated colour far enough from the background colours
        for _ in range(50):
            color = _hsv2rgb(rng.uniform(0, 360), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
            if min(np.linalg.norm(color - c) for c in self._base_colors.values()) > 70:
                break
        color2 = _hsv2rgb(rng.uniform(0, 360), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
        return Thing(
            track_id=len(self.things) + 1, category_id=cat, size=float(size), birth=f, death=self.num_frames,
            p0=(float(p[0]), float(p[1])), v=(float(v[0]), float(v[1])),
            angle0=float(rng.uniform(0, 2 * np.pi)),
            omega=float(np.deg2rad(rng.uniform(-45, 45)) / self.fps) if cat != CIRCLE else 0.0,
            wobble_amp=float(wob), wobble_freq=float(2 * np.pi * rng.uniform(0.2, 0.6) / self.fps),
            wobble_phase=float(rng.uniform(0, 2 * np.pi)), z=float(rng.random()),
            color=color, color2=color2, texture=int(rng.integers(0, 4)),
            tex_period=float(rng.uniform(8, 20) * s), tex_angle=float(rng.uniform(0, np.pi)),
            tex_amp=float(rng.uniform(0.15, 0.35)),
        )

    def _exit_frame(self, t: Thing) -> int:
        """First frame after `t.birth` at which the thing's bounding box lies outside the frame."""
        b = t.bound()
        t_out = math.inf
        for p, v, lim in ((t.p0[0], t.v[0], self.width), (t.p0[1], t.v[1], self.height)):
            # overlap while p + v*dt + b > 0 and p + v*dt - b < lim
            if v > 0:
                t_out = min(t_out, (lim + b - p) / v)
            elif v < 0:
                t_out = min(t_out, (-b - p) / v)
        if not math.isfinite(t_out):
            return self.num_frames
        return min(self.num_frames, t.birth + max(1, math.floor(t_out) + 1))

    def _simulate(self, rng: np.random.Generator) -> None:
        p_spawn = 1.0 / (1.5 * self.fps)  # about one arrival every 1.5 s while there is room
        n0 = int(rng.integers(self.MIN_THINGS, self.MAX_THINGS + 1))
        for _ in range(n0):
            self._add(rng, 0, entering=False)
        for f in range(self.num_frames):
            alive = sum(t.alive(f) for t in self.things)
            while alive < self.MIN_THINGS:
                self._add(rng, f, entering=True)
                alive += 1
            if f > 0 and alive < self.MAX_THINGS and rng.random() < p_spawn:
                self._add(rng, f, entering=True)

    def _add(self, rng, f, entering) -> None:
        t = self._new_thing(rng, f, entering)
        t.death = self._exit_frame(t)
        self.things.append(t)

    def _draw_thing(self, t: Thing, f: int, img: np.ndarray, ids: np.ndarray, sid: int) -> tuple[float, float, float]:
        cx, cy, ang = t.pose(f)
        r = t.radius + 1
        x0, x1 = max(0, int(math.floor(cx - r))), min(self.width, int(math.ceil(cx + r)) + 1)
        y0, y1 = max(0, int(math.floor(cy - r))), min(self.height, int(math.ceil(cy + r)) + 1)
        if x0 >= x1 or y0 >= y1:
            return cx, cy, ang
        dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
        dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
        c, s = math.cos(ang), math.sin(ang)
        u = dx * c + dy * s     # object-local coordinates (rotate with the object)
        w = -dx * s + dy * c
        if t.category_id == CIRCLE:
            mask = u * u + w * w <= t.size * t.size
        elif t.category_id == SQUARE:
            mask = (np.abs(u) <= t.size) & (np.abs(w) <= t.size)
        else:
            mask = np.ones(u.shape, dtype=bool)
            for k in range(3):  # equilateral: inradius = R/2, edges opposite the vertices
                a = np.pi / 2 + k * 2 * np.pi / 3
                mask &= (-(u * math.cos(a) + w * math.sin(a))) <= t.size / 2
        if not mask.any():
            return cx, cy, ang
        # texture in object coordinates
        if t.texture == 0:
            tex = np.broadcast_to(t.color, u.shape + (3,))
        elif t.texture == 1:
            ph = (u * math.cos(t.tex_angle) + w * math.sin(t.tex_angle)) / t.tex_period
            tex = t.color[None, None, :] * (1 + t.tex_amp * np.sin(2 * np.pi * ph))[..., None]
        elif t.texture == 2:
            tex = t.color[None, None, :] * (1 + 0.3 * (u / t.size))[..., None]
        else:
            chk = (np.floor(u / t.tex_period) + np.floor(w / t.tex_period)) % 2 == 0
            tex = np.where(chk[..., None], t.color[None, None, :], 0.6 * t.color[None, None, :] + 0.4 * t.color2[None, None, :])
        img[y0:y1, x0:x1][mask] = tex[mask]
        ids[y0:y1, x0:x1][mask] = sid
        return cx, cy, ang

    # -- frames -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.num_frames):
            yield self.frame(i)

    def frame(self, i: int) -> Frame:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_frames:
            raise IndexError(f"frame index {i!r} out of range 0..{self.num_frames - 1}")
        i = int(i)
        H, W = self.height, self.width
        rng = _rng(self._entropy, 1, i)
        img = self._bg.copy()
        # drifting clouds in the sky
        shift = int(round(i * self._cloud_speed))
        r = self._sky_rows
        cols = (np.arange(W) + shift) % self._cloud_w
        sky = self._sky[:r]
        cl = self._clouds[:r][:, cols][sky][:, None]
        top = img[:r]
        top[sky] = top[sky] * (1 - cl) + 245.0 * cl
        lanes = self._lanes(i)
        img[lanes] = self._lane_color
        ids = self._stuff_ids.copy()
        objects = []
        for t in sorted((t for t in self.things if t.alive(i)), key=lambda t: t.z):
            cx, cy, ang = self._draw_thing(t, i, img, ids, THING_ID_BASE + t.track_id)
            objects.append({"track_id": t.track_id, "category_id": t.category_id, "center": [cx, cy],
                            "angle": ang, "size": t.size, "z": t.z})
        # camera: slight global gain flicker and sensor noise
        gain = 1.0 + rng.uniform(-0.03, 0.03)
        noise = rng.standard_normal((H, W, 1), dtype=np.float32) * self._noise_sigma  # luminance noise
        img *= gain
        img += noise
        img += 0.5
        rgb = np.clip(img, 0, 255).astype(np.uint8)

        # segments
        counts = np.bincount(ids.ravel())
        uniq = np.flatnonzero(counts)
        area = {int(u): int(counts[u]) for u in uniq}
        for o in objects:
            o["area"] = area.get(THING_ID_BASE + o["track_id"], 0)
        small = [u for u in uniq.tolist() if u >= THING_ID_BASE and area[u] < self.min_thing_area]
        for u in small:
            ids[ids == u] = VOID
        segments = []
        for u in uniq.tolist():
            if u in small:
                continue
            m = ids == u
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
            thing = u >= THING_ID_BASE
            segments.append({
                "id": int(u),
                "category_id": int(self.things[u - THING_ID_BASE - 1].category_id) if thing else int(u - 1),
                "iscrowd": 0,
                "area": int(area[u]),
                "bbox": bbox,
                "track_id": int(u - THING_ID_BASE) if thing else None,
            })
        return Frame(index=i, rgb=rgb, ids=ids, segments=segments, objects=objects)


# --- COCO panoptic ---------------------------------------------------------------------------------

def coco_categories() -> list[dict]:
    """COCO panoptic ``categories`` for the label set (isthing as 0/1, as COCO writes it)."""
    return [{"id": l["id"], "name": l["name"], "supercategory": "thing" if l["isthing"] else "stuff",
             "isthing": int(l["isthing"]), "color": list(l["color"])} for l in LABELS]


def coco_annotation(frame: Frame, image_id: int, file_name: str) -> dict:
    """COCO panoptic annotation of a frame; segments carry the extra field ``track_id``
    (the thing's identity in its clip, null for stuff)."""
    return {"image_id": image_id, "file_name": file_name,
            "segments_info": [dict(s) for s in frame.segments]}


# --- network input ---------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (PIL) of an RGB uint8 frame to exactly height x width."""
    from PIL import Image
    return np.array(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def resize_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a segment-id map (pixel centres)."""
    H, W = ids.shape
    ry = np.minimum(((np.arange(height) + 0.5) * H / height).astype(np.int64), H - 1)
    rx = np.minimum(((np.arange(width) + 0.5) * W / width).astype(np.int64), W - 1)
    return ids[ry][:, rx]


def fit_size(frame_h: int, frame_w: int, height: int, width: int) -> tuple[int, int]:
    """Size of a frame_h x frame_w frame resized to fit height x width keeping its aspect ratio
    (segstream's preprocess, src/preprocess.rs ``fit_size``): scale = min(H/h, W/w), each side
    rounded half up and clamped to 1..H / 1..W."""
    scale = min(height / frame_h, width / frame_w)
    return (min(max(int(np.floor(frame_h * scale + 0.5)), 1), height),
            min(max(int(np.floor(frame_w * scale + 0.5)), 1), width))


def model_input(rgb: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """What segstream feeds the network: the frame resized to fit (PIL bilinear), normalized,
    zero-padded bottom/right to height x width. Returns (float32 3xHxW, (valid_h, valid_w))."""
    vh, vw = fit_size(rgb.shape[0], rgb.shape[1], height, width)
    pix = np.zeros((3, height, width), np.float32)
    pix[:, :vh, :vw] = normalize(rgb if (vh, vw) == rgb.shape[:2] else resize_rgb(rgb, vh, vw))
    return pix, (vh, vw)


def model_ids(ids: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A segment-id map placed as :func:`model_input` places its frame: resized to fit
    (nearest), padded with 0 (VOID). Returns (ids HxW, (valid_h, valid_w))."""
    vh, vw = fit_size(ids.shape[0], ids.shape[1], height, width)
    out = np.zeros((height, width), ids.dtype)
    out[:vh, :vw] = resize_ids(ids, vh, vw)
    return out, (vh, vw)


def crop_mask_logits(masks, valid: tuple[int, int], input_hw: tuple[int, int]):
    """Mask logits ``[..., h, w]`` without the rows/columns that cover only padding: what is
    left of a ``valid`` region of an ``input_hw`` input (exact when valid is a multiple of
    input/mask, e.g. 160x284 of 160x288 -> 40x71 of 40x72)."""
    mh, mw = masks.shape[-2:]
    return masks[..., : -(-valid[0] * mh // input_hw[0]), : -(-valid[1] * mw // input_hw[1])]


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW, rescaled by 1/255 and normalized with ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def training_arrays(seed: Sequence[int] | int, height: int = 288, width: int = 512,
                    clip_frames: int = 60, frame: int | None = None,
                    clip: "Clip | None" = None, fit: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact training sample: frame ``frame`` (default: drawn from the seed) of the 640x360 clip
    ``seed`` (or of ``clip``, a cached ``Clip(seed, num_frames=clip_frames)``), resized to
    ``height`` x ``width``. Returns (rgb HxWx3 uint8, index map HxW uint8 -- the position of the
    pixel's segment in ``classes``, 255 for VOID --, classes K int64)."""
    if clip is None:
        clip = Clip(seed, num_frames=clip_frames)
    if frame is None:
        frame = int(_rng(_entropy(seed), 2).integers(0, clip.num_frames))
    fr = clip.frame(frame)
    # fit: resized keeping the aspect ratio and padded bottom/right as segstream feeds the
    # network (padding: rgb 0 -- the trainer zeroes it after normalization --, index VOID)
    if fit:
        small, (vh, vw) = model_ids(fr.ids, height, width)
    else:
        small, (vh, vw) = resize_ids(fr.ids, height, width), (height, width)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:vh, :vw] = resize_rgb(fr.rgb, vh, vw)
    index = np.full((height, width), 255, dtype=np.uint8)
    classes = []
    for s in fr.segments:
        m = small == s["id"]
        if m.any():
            index[m] = len(classes)
            classes.append(s["category_id"])
    return rgb, index, np.array(classes, dtype=np.int64)


def training_example(seed: Sequence[int] | int, height: int = 288, width: int = 512,
                     clip_frames: int = 60, frame: int | None = None,
                     clip: "Clip | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`training_arrays`, in the model's terms: (pixel_values 3xHxW float32, masks
    KxHxW float32 in {0,1}, one per segment, VOID pixels in none, classes K int64)."""
    rgb, index, classes = training_arrays(seed, height, width, clip_frames, frame, clip)
    masks = (index[None] == np.arange(len(classes), dtype=np.uint8)[:, None, None]).astype(np.float32)
    return normalize(rgb), masks, classes
