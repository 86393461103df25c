"""bnbook: the machinery of the book *Batch normalization, measured*.

Not a library for readers' models (that is :mod:`bnlib`, which never imports this package): the
interactive figures (:mod:`bnbook.explore`), the figure style (:mod:`bnbook.style`), the Sphinx
extension (:mod:`bnbook.sphinx_ext`), one timing helper (:mod:`bnbook.timing`), the PyTorch helpers
(:mod:`bnbook.torch_tools`) and one module per chapter (``bnbook.ch04_running_stats`` ...) holding
that chapter's experiment drivers and figures, where the tests reach them.

Importing ``bnbook`` itself loads nothing heavy; each submodule imports what it needs.
"""

__version__ = "0.2.0"
