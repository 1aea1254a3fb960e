"""Playlists: pure tracks-in, ordered-tracks-out, plus rendering, history and the keeper.
Imports leaves and the store only."""
