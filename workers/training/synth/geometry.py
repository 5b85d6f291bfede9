"""Camera model that maps the flat label into the scene image, exactly for images and points.

Frames:
- label frame: (u, v) pixels of the flat rendered label, origin top-left, u right, v down,
  size (label_w, label_h).
- object frame (3-D, pixels): label centre at the origin, x right, y down, z away from the
  camera. A flat label lies in z = 0. A curved label is wrapped on a cylinder with its axis
  along y, touching z = 0 along the label's centre column: for arc length a = u - label_w/2,
  theta = a / radius, x = radius * sin(theta), z = radius * (1 - cos(theta)).
- camera frame: P_cam = R @ P_obj + (0, 0, dist), with R = Rz(roll) @ Rx(pitch) @ Ry(yaw);
  pinhole projection with focal length ``dist`` (so the label centre keeps scale 1).
- image frame: (x, y) pixels of the output canvas = scale * projection + (tx, ty).

``project`` maps label points to image points; ``warp`` renders the label image through the
same model (a homography when flat, a per-pixel ray/cylinder intersection when curved), so
ground-truth points and pixels agree to interpolation accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = (math.radians(t) for t in (yaw, pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


@dataclass
class Camera:
    """Label-to-image mapping. Angles in degrees; ``radius`` None means a flat label."""

    label_w: int
    label_h: int
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    dist: float = 2000.0
    radius: float | None = None
    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    @property
    def curved(self) -> bool:
        return self.radius is not None

    def _rot(self) -> np.ndarray:
        return _rotation(self.yaw, self.pitch, self.roll)

    def to_object(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) label points -> (N, 3) object-frame points."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        a = uv[:, 0] - self.label_w / 2.0
        y = uv[:, 1] - self.label_h / 2.0
        if self.radius is None:
            return np.stack([a, y, np.zeros_like(a)], axis=1)
        th = a / self.radius
        return np.stack([self.radius * np.sin(th), y, self.radius * (1 - np.cos(th))], axis=1)

    def project(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) label-frame points -> (N, 2) image-frame points (float64)."""
        p = self.to_object(uv) @ self._rot().T
        z = p[:, 2] + self.dist
        x = self.dist * p[:, 0] / z
        y = self.dist * p[:, 1] / z
        return np.stack([self.scale * x + self.tx, self.scale * y + self.ty], axis=1)

    def outline(self, n: int = 48) -> np.ndarray:
        """Label border sampled densely (4n points) in the label frame, clockwise."""
        w, h = self.label_w, self.label_h
        t = np.linspace(0, 1, n, endpoint=False)
        top = np.stack([t * w, np.zeros(n)], 1)
        right = np.stack([np.full(n, w), t * h], 1)
        bottom = np.stack([w - t * w, np.full(n, h)], 1)
        left = np.stack([np.zeros(n), h - t * h], 1)
        return np.concatenate([top, right, bottom, left])

    def fit(
        self,
        canvas_w: int,
        canvas_h: int,
        fill: float,
        rng: np.random.Generator,
        margin: float = 8.0,
    ) -> None:
        """Choose scale and translation so the projected label spans ``fill`` of the canvas
        (in its limiting dimension) at a random position, fully inside with ``margin`` pixels."""
        self.scale, self.tx, self.ty = 1.0, 0.0, 0.0
        pts = self.project(self.outline())
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        bw, bh = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
        s = min(fill * canvas_w / bw, fill * canvas_h / bh)
        s = min(s, (canvas_w - 2 * margin) / bw, (canvas_h - 2 * margin) / bh)
        self.scale = float(s)
        free_x = canvas_w - 2 * margin - s * bw
        free_y = canvas_h - 2 * margin - s * bh
        self.tx = float(margin + rng.uniform(0, max(free_x, 0)) - s * x0)
        self.ty = float(margin + rng.uniform(0, max(free_y, 0)) - s * y0)

    def min_view_cosine(self, n: int = 24) -> float:
        """Smallest cosine, over the label border, between the surface normal and the direction
        to the camera (1 = seen face-on, <= 0 = seen edge-on or from behind)."""
        uv = self.outline(n)
        p = self.to_object(uv)
        if self.radius is None:
            normal = np.tile([0.0, 0.0, -1.0], (len(p), 1))
        else:
            th = (uv[:, 0] - self.label_w / 2.0) / self.radius
            normal = np.stack([np.sin(th), np.zeros_like(th), -np.cos(th)], axis=1)
        cam = self._rot().T @ np.array([0.0, 0.0, -self.dist])
        v = cam[None, :] - p
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return float((normal * v).sum(1).min())

    def homography(self) -> np.ndarray:
        """3x3 label->image homography (flat labels only)."""
        if self.curved:
            raise ValueError("a curved label has no homography")
        src = np.array(
            [[0, 0], [self.label_w, 0], [self.label_w, self.label_h], [0, self.label_h]],
            np.float64,
        )
        dst = self.project(src)
        return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) image points -> (N, 2) label points (curved: first ray/cylinder hit)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        x = (xy[:, 0] - self.tx) / self.scale
        y = (xy[:, 1] - self.ty) / self.scale
        rt = self._rot().T
        d = np.stack([x / self.dist, y / self.dist, np.ones_like(x)], axis=1) @ rt.T
        o = rt @ np.array([0.0, 0.0, -self.dist])
        if self.radius is None:
            t = -o[2] / d[:, 2]
            px = o[0] + t * d[:, 0]
            py = o[1] + t * d[:, 1]
            return np.stack([px + self.label_w / 2.0, py + self.label_h / 2.0], axis=1)
        r = self.radius
        a = d[:, 0] ** 2 + d[:, 2] ** 2
        b = 2 * (o[0] * d[:, 0] + (o[2] - r) * d[:, 2])
        c = o[0] ** 2 + (o[2] - r) ** 2 - r**2
        disc = np.maximum(b * b - 4 * a * c, 0.0)
        t = (-b - np.sqrt(disc)) / (2 * a)
        px = o[0] + t * d[:, 0]
        py = o[1] + t * d[:, 1]
        pz = o[2] + t * d[:, 2]
        th = np.arctan2(px, r - pz)
        return np.stack([th * r + self.label_w / 2.0, py + self.label_h / 2.0], axis=1)

    def warp(self, label: np.ndarray, canvas_w: int, canvas_h: int) -> np.ndarray:
        """Render ``label`` (h, w, C) float32 into a (canvas_h, canvas_w, C) layer, zero outside."""
        if not self.curved:
            return cv2.warpPerspective(
                label,
                self.homography(),
                (canvas_w, canvas_h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        pts = self.project(self.outline())
        x0 = int(max(math.floor(pts[:, 0].min()) - 2, 0))
        y0 = int(max(math.floor(pts[:, 1].min()) - 2, 0))
        x1 = int(min(math.ceil(pts[:, 0].max()) + 3, canvas_w))
        y1 = int(min(math.ceil(pts[:, 1].max()) + 3, canvas_h))
        rw, rh = x1 - x0, y1 - y0
        step = 4
        gw, gh = max(rw // step, 2), max(rh // step, 2)
        # grid positions that cv2.resize (INTER_LINEAR) maps exactly onto output pixels
        gx = (np.arange(gw) + 0.5) * rw / gw - 0.5 + x0
        gy = (np.arange(gh) + 0.5) * rh / gh - 0.5 + y0
        xx, yy = np.meshgrid(gx, gy)
        uv = self.inverse(np.stack([xx.ravel(), yy.ravel()], 1))
        mu = uv[:, 0].reshape(gh, gw).astype(np.float32)
        mv = uv[:, 1].reshape(gh, gw).astype(np.float32)
        mu = cv2.resize(mu, (rw, rh), interpolation=cv2.INTER_LINEAR)
        mv = cv2.resize(mv, (rw, rh), interpolation=cv2.INTER_LINEAR)
        region = cv2.remap(
            label,
            mu,
            mv,
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        out = np.zeros((canvas_h, canvas_w) + label.shape[2:], np.float32)
        out[y0:y1, x0:x1] = region.reshape(out[y0:y1, x0:x1].shape)
        return out
