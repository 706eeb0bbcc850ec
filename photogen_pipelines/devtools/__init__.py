"""Tools for working on PhotoGen, never used to serve an order: tiny random-weight models
in the production layout, so the GPU engine's real code path runs on any CPU in seconds
(tests, benchmarks, `photogen dev make-tiny-models`). Their pictures are noise."""
