"""The ground floor: types and helpers every stage shares, importing nothing else of adaptc.

``quantity`` (every reported number with how it was obtained, budget verdicts, the gate and ``prefer`` rules),
``stats`` (sampling error of task metrics), ``formats`` and ``schemes`` (the one table of formats, runtimes,
file suffixes and quantization schemes), ``names`` (registries with did-you-mean and wildcard listing), ``io``
(atomic writes, sha256), ``cache``, ``progress``, ``versions``.
"""

#: adaptc's own version (``adaptc.__version__``; pyproject.toml says the same)
__version__ = "0.1.0"
