//! An in-process Pexip Management API simulator, for `maxconf dev` and tests.
