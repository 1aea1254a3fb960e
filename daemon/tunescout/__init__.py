"""tunescout: watch a music library, analyse every track, build playlists."""

__version__ = "0.1.0"
