"""What each column shown in Datasette holds: the descriptions catalog.browse.metadata hands over."""

GALLERY_COLUMNS = {
    "thumbnail": "A small copy of the photo kept in the catalogue (made from the original, no API call); "
                 "click it for everything known about the photo.",
    "path": "Where the photo is: the first of its paths, in path order.",
    "taken": "When it was taken (EXIF date, the camera's local time).",
    "year": "The year it was taken.",
    "camera": "Camera make and model from EXIF.",
    "tags": "Tags from the analysis (a JSON list; filter by one with the tags facet).",
    "place": "Where it was taken: city, region and country, from its GPS position (the places enricher).",
    "description": "A sentence describing the photo, from the analysis.",
    "scene": "Scene as analysed (indoor, outdoor, ...; unknown when the analyzer cannot tell).",
    "mood": "Mood as analysed (unknown when the analyzer cannot tell).",
    "orientation": "landscape, portrait or square, as the photo is seen upright.",
    "color": "Dominant colour (#rrggbb).",
    "latitude": "Where it was taken: GPS latitude from EXIF (photos with GPS are on the map).",
    "longitude": "Where it was taken: GPS longitude from EXIF.",
    "status": "Analysis status: done, failed or pending.",
    "copies": "How many paths hold this same image (duplicates share one row).",
    "format": "Image format of the original (JPEG, PNG, HEIF, ...).",
    "width": "Width of the original in pixels, as stored (before EXIF rotation).",
    "height": "Height of the original in pixels, as stored (before EXIF rotation).",
    "added": "When the catalogue first saw this photo.",
    "photo_id": "The photo's identity: a BLAKE3 hash of its image content.",
    "rowid": "The photo's row in the search index (used by the search box).",
}

PHOTOS_COLUMNS = {
    "id": "The photo's identity: a BLAKE3 hash of its image content, not of its metadata.",
    "format": "Image format (JPEG, PNG, HEIF, ...).",
    "width": "Width in pixels, as stored.",
    "height": "Height in pixels, as stored.",
    "orientation": "EXIF orientation, 1-8 (1 is upright).",
    "taken_at": "When it was taken (EXIF, the camera's local time).",
    "camera_make": "Camera make from EXIF.",
    "camera_model": "Camera model from EXIF.",
    "gps_lat": "GPS latitude from EXIF.",
    "gps_lon": "GPS longitude from EXIF.",
    "exif_error": "Metadata that could not be read (the photo itself is fine).",
    "first_seen": "When the catalogue first saw this photo.",
    "analysis_status": "pending (empty), done or failed.",
    "analysis_error": "Why the last analysis failed.",
    "analysis_permanent": "1: the failure is permanent and will not be retried.",
    "attempts": "How many times analysis was tried.",
    "last_attempt_at": "When analysis was last tried.",
    "tags": "Tags of every source merged (JSON list): the back-end's first, then the enrichers'.",
    "place": "City, region and country from the GPS position (the places enricher).",
    "description": "Description from the analysis.",
    "objects": "Objects seen in the photo (JSON list).",
    "dominant_color": "Dominant colour (#rrggbb).",
    "palette": "Main colours (JSON list of #rrggbb).",
    "scene": "Scene as analysed.",
    "mood": "Mood as analysed.",
    "safe_adult": "Safe-search likelihood of adult content (the safety enricher's where the back-end "
                  "said UNKNOWN).",
    "safe_violence": "Safe-search likelihood of violence.",
    "shape": "landscape, portrait or square, as analysed.",
    "provider": "Which back-end produced the analysis (offline, imgtags, openai); every source is in "
                "the analyses table.",
    "model": "The analyzer's model.",
    "tokens_used": "Tokens the analysis cost.",
    "processing_time_ms": "How long the analyzer took, in milliseconds.",
    "analysed_at": "When the analysis was stored.",
    "raw_response": "The analyzer's full answer (JSON).",
    "phash": "Perceptual fingerprint of the upright picture: a 64-bit difference hash, stored signed "
             "(copies, edits and bursts are found by it).",
    "aspect": "Upright width / height, part of the fingerprint.",
    "tone": "Mean colour (R << 16 | G << 8 | B), part of the fingerprint: tells a colour edit from a copy.",
    "detail": "16x16 grey cells, part of the fingerprint: tells a copy from a small crop.",
    "fingerprint_error": "Why the picture could not be fingerprinted (not tried again until the file changes).",
}

FILES_COLUMNS = {
    "path": "The file's path.",
    "path_bytes": "The exact name bytes, when the name is not valid UTF-8.",
    "root": "The library folder it was found under.",
    "folder": "Its folder.",
    "name": "Its file name.",
    "photo_id": "The photo (image content) this file holds.",
    "size": "Size in bytes.",
    "mtime_ns": "Modification time (nanoseconds since 1970) at the last read.",
    "status": "ok, error (unreadable or not a photo), missing (gone since) or moved.",
    "error": "What was wrong with the file.",
    "error_kind": "The kind of error (empty, truncated, not an image, ...).",
    "first_seen": "When a scan first found this path.",
    "last_seen": "When a scan last wrote this row; a present file was also found whenever its folder was "
                 "listed since (folders.last_seen).",
    "missing_since": "When the file was found gone.",
    "moved_to": "Where it went, when it was moved or renamed.",
}

FOLDERS_COLUMNS = {
    "path": "A folder holding catalogued files (files.folder).",
    "last_seen": "When a scan last listed it: its present files were there then.",
}

RUNS_COLUMNS = {
    "id": "Run number.",
    "command": "What ran: scan, analyze or run (the nightly job).",
    "started_at": "When it started (UTC).",
    "finished_at": "When it finished (UTC).",
    "status": "running, ok, partial (some files failed), failed or interrupted.",
    "message": "What went wrong or why it stopped early.",
    "counts": "The run's summary (JSON): files seen, new, moved, analysed, tokens, requests, ...",
}

ANALYSES_COLUMNS = {
    "photo_id": "The photo analysed.",
    "source": "Who said it: a back-end (imgtags, openai, offline) or an enricher (places, text, safety, faces).",
    "kind": "backend or enricher.",
    "tags": "The tags this source gave (JSON list).",
    "description": "Its description (back-ends).",
    "objects": "Objects it saw (JSON list).",
    "dominant_color": "Dominant colour (#rrggbb).",
    "palette": "Main colours (JSON list).",
    "scene": "Scene.",
    "mood": "Mood.",
    "safe_adult": "Likelihood of adult content, as this source rated it.",
    "safe_violence": "Likelihood of violence.",
    "shape": "landscape, portrait or square.",
    "place": "City, region and country (places).",
    "city": "City (places).",
    "region": "Region: the first-level division (places).",
    "country": "Country (places).",
    "text": "Text read in the photo, one line per line (text).",
    "faces": "How many faces (faces).",
    "error": "Why this enricher could not read the photo (not tried again).",
    "provider": "The service, or the package (and version) that shipped the model or data set.",
    "model": "The model or data set.",
    "produced_at": "When this source's answer was stored (UTC).",
    "tokens_used": "Tokens it cost.",
    "processing_time_ms": "How long it took, in milliseconds.",
    "raw": "The answer as received (JSON).",
    "copied_from": "For a copy of an analysed photo: the photo whose answer this is (no request was made, "
                   "0 tokens); empty for a source's own answer.",
}

THUMBNAIL_COLUMNS = {
    "photo_id": "The photo this is a thumbnail of.",
    "jpeg": "The thumbnail: a JPEG about 256 px on its long edge.",
    "width": "Thumbnail width in pixels.",
    "height": "Thumbnail height in pixels.",
}

PHOTO_GROUPS_COLUMNS = {
    "kind": "near (copies and edits of one picture) or burst (shots of one camera within seconds).",
    "group_no": "The group's number within its kind: its id, kept while the group is (a scan regroups only what "
                "it changed, so new groups take new numbers).",
    "listed": "On a group's first row, its place in the listing: biggest first, then by the keeper's id (near) "
              "or the first shot's time and id (burst), as `catalog duplicates --near/--bursts` lists them.",
    "position": "The photo's place in its group: 0 is the suggested keeper (near) or the first shot (burst).",
    "photo_id": "The photo.",
    "relation": "What it is to the keeper: copy (resized, re-encoded, converted, rotated) or edit (cropped, "
                "colour-edited); empty for the keeper and for burst shots.",
}

SIMILAR_GROUPS_COLUMNS = {
    "kind": "near (copies and edits of one picture) or burst (shots of one camera within seconds).",
    "group_no": "The group's number within its kind (its id in photo_groups).",
    "listed": "The group's place in the listing (sort by it): biggest first, as `catalog duplicates` lists them.",
    "photos": "How many photos the group holds.",
    "thumbnails": "The group's photos side by side, the suggested keeper (or first shot) first; click one "
                  "for everything known about it.",
    "paths": "Each photo's first path, in the same order (JSON list).",
    "relations": "Each photo's relation to the keeper, in the same order: null (the keeper), copy or edit.",
    "photo_ids": "Each photo's identity, in the same order (JSON list).",
}
