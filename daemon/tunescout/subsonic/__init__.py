"""The user's Subsonic server (Navidrome, gonic, Airsonic, LMS, supysonic): its song ids for the
HTTP API, so that `item_id` means what the plugin's server means, and playlists pushed to it.

client.py asks the server; songs.py matches its songs to tunescout's files by path; link.py is
what the daemon runs (a thread, one state, one backoff).
"""

from tunescout.subsonic.link import PlaylistPush, SubsonicLink

__all__ = ["PlaylistPush", "SubsonicLink"]
