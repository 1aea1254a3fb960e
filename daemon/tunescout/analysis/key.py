"""Estimate the musical key from a mean chroma vector (Krumhansl–Schmuckler key finding).

Pure numpy, so it can be tested on hand-made chroma vectors. The profiles are Temperley's
(Kostka–Payne corpus): on chord-based material they confuse relative major/minor less often than
Krumhansl–Kessler's probe-tone ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

MAJOR_PROFILE = np.array(
    [0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400]
)
MINOR_PROFILE = np.array(
    [0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330]
)


@dataclass(frozen=True)
class Key:
    """A key, how well the chroma fits it, and its Camelot code for harmonic mixing."""

    tonic: str
    mode: str  # "major" or "minor"
    strength: float  # Pearson correlation with the best profile, clipped to 0..1

    @property
    def camelot(self) -> str:
        """Return the Camelot wheel code: C major is 8B, A minor (its relative) 8A."""
        pitch = PITCH_CLASSES.index(self.tonic)
        major_pitch = pitch if self.mode == "major" else (pitch + 3) % 12
        number = (7 * major_pitch + 7) % 12 + 1  # a fifth up is one step round the wheel
        return f"{number}{'B' if self.mode == 'major' else 'A'}"


def estimate_key(chroma_mean: npt.NDArray[np.floating]) -> Key | None:
    """Return the best-correlating of the 24 keys; None for a flat chroma (silence, noise)."""
    chroma = np.asarray(chroma_mean, dtype=np.float64)
    if chroma.shape != (12,) or not np.all(np.isfinite(chroma)) or np.ptp(chroma) < 1e-6:
        return None
    best: tuple[float, int, str] = (-2.0, 0, "major")
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if r > best[0]:
                best = (r, tonic, mode)
    r, tonic, mode = best
    return Key(PITCH_CLASSES[tonic], mode, min(max(r, 0.0), 1.0))
