"""A raw video request body (`Content-Type: video/mp4` ...), for invoke and uploads alike."""

from __future__ import annotations

import re
import tempfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.datastructures import MultiValueDict
from rest_framework.parsers import BaseParser, DataAndFiles

from config.api import ApiError

_CHUNK = 1024 * 1024
_FILENAME = re.compile(r'filename="?([^";]+)"?')


class VideoParser(BaseParser):
    """The body becomes one uploaded `file`, as if it were a multipart part: copied in chunks to a
    temporary file (in memory up to 8 MB), never more than PICTOR_VIDEO_MAX_BYTES."""

    media_type = "video/*"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        limit = settings.PICTOR_VIDEO_MAX_BYTES
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        size = 0
        while stream is not None:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                spool.close()
                raise ApiError(
                    "too_large",
                    f"The video is over the limit of {limit:,} bytes (PICTOR_VIDEO_MAX_BYTES).",
                    413,
                    {"file": [f"at most {limit} bytes"]},
                )
            spool.write(chunk)
        spool.seek(0)
        disposition = request.META.get("HTTP_CONTENT_DISPOSITION", "") if request is not None else ""
        match = _FILENAME.search(disposition)
        name = match[1].strip() if match else "video"
        upload = UploadedFile(file=spool, name=name, content_type=(media_type or "").split(";")[0], size=size)
        return DataAndFiles(MultiValueDict(), MultiValueDict({"file": [upload]}))
