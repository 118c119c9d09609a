"""Safe image input: size and pixel caps before decoding, typed errors, EXIF, RGB."""

from visor.io.image import (
    ALLOWED_FORMATS,
    DEFAULT_LIMITS,
    IMAGE_EXTENSIONS,
    ImageLimits,
    ImageSource,
    bounded_copy,
    describe_source,
    expand_paths,
    glob_images,
    load_image,
    open_image,
    to_rgb,
    walk_images,
)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_LIMITS",
    "IMAGE_EXTENSIONS",
    "ImageLimits",
    "ImageSource",
    "bounded_copy",
    "describe_source",
    "expand_paths",
    "glob_images",
    "load_image",
    "open_image",
    "to_rgb",
    "walk_images",
]
