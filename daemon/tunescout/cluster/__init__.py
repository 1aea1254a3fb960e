"""Lending analysis to other machines through Dask distributed (`pip install 'tunescout[cluster]'`).

Nothing here is imported unless `[workers] scheduler` (or `scan --scheduler`, or `tunescout
worker`) asks for it, and only `remote` and `submitter` import `distributed`: the
path map, the wire shapes and the judging of outcomes are plain Python, testable without Dask.
The work unit is the daemon's own: one file, analysed in a forked, rlimited child of a zygote on
the worker machine; Dask only moves paths there and results back to the one writer.
"""
