//! Runnable examples of errand: see the `[[example]]` entries of this package.
