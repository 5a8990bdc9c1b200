"""Typed errors raised by the library; the CLI turns them into one-line messages."""


class ColorsrError(Exception):
    """Base class for every error colorsr reports to the user."""


class ImageReadError(ColorsrError):
    """An input file could not be decoded as an image (corrupt, truncated, too big, not an image)."""


class ImageWriteError(ColorsrError):
    """An output could not be written (unwritable folder, disk full, collision with an input)."""


class WeightsError(ColorsrError):
    """A weight file is missing, fails verification, or cannot be loaded safely."""


class DownloadError(WeightsError):
    """A download failed (HTTP error, refused connection, checksum mismatch)."""


class DataError(ColorsrError):
    """A training data folder is empty or unreadable."""


class VideoError(ColorsrError):
    """A video could not be read, restored or encoded, or its output would replace a finished one."""


class RecipeError(ColorsrError, ValueError):
    """A training recipe's option has a value the recipe cannot train with; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
