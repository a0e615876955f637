"""The file pipelines: the one road from a codec and audio, tokens or ``.fcz`` bytes to
files and back. The command line, the server and Python users all call these.

``compress`` (waveforms <-> ``.fcz`` bytes in memory), ``longaudio`` (inputs of any
length piece by piece, with bounded memory), ``banks`` (speaker banks for kNN voice
conversion), ``tokenize`` and ``loader`` (corpora into token folders).

This ``__init__`` imports nothing, so importing one pipeline does not load the others.
"""
