"""Maps of the method: counts images, instrument maps, aspect histograms, projected templates.

Everything here works in memory (arrays + headers); the ``write_*`` functions produce the seed's
file layouts. Array convention ``img[y, x]``, 0-based; DET1 array index = DET1X − 1.
"""

from .aperture import aperture_map_det1, read_aperture_params, read_aperture_template
from .aspecthist import (
    AspectHistogram,
    aspect_histogram,
    aspect_histogram_from_files,
    read_aspect_histogram,
    write_aspect_histogram,
)
from .images import CountsImage, band_label, make_counts_image, make_det1_image, write_counts_image
from .instrmap import (
    DEFAULT_BAD_BITS,
    GRADE_WEIGHTS,
    InstrumentMap,
    bad_raw_pixels,
    load_pixel_maps,
    make_instrument_map,
    pixel_maps_from_pixpos,
    read_instrument_map,
    write_instrument_map,
)
from .projection import (
    ProjectedMaps,
    det1_coordinates,
    nudge,
    parse_detectors,
    project_maps,
    read_reference_image,
    roll_angle,
    write_projected_maps,
)
from .eventaspect import EventAspect, aspect_from_events
from .shift import bilinear_shift

__all__ = [
    "aperture_map_det1", "read_aperture_params", "read_aperture_template",
    "AspectHistogram", "aspect_histogram", "aspect_histogram_from_files", "read_aspect_histogram",
    "write_aspect_histogram",
    "CountsImage", "band_label", "make_counts_image", "make_det1_image", "write_counts_image",
    "DEFAULT_BAD_BITS", "GRADE_WEIGHTS", "InstrumentMap", "bad_raw_pixels", "load_pixel_maps",
    "make_instrument_map", "pixel_maps_from_pixpos", "read_instrument_map", "write_instrument_map",
    "ProjectedMaps", "det1_coordinates", "nudge", "parse_detectors", "project_maps", "read_reference_image",
    "roll_angle", "write_projected_maps",
    "EventAspect", "aspect_from_events",
    "bilinear_shift",
]
