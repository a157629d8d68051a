"""File layer: readers and writers of NuSTAR, OGIP and ds9 files, with validation."""
