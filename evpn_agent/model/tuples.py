"""Building the model's NamedTuples where one is built per route or event of a burst."""

# A NamedTuple's own constructor is a generated Python __new__ (defaults, arguments by
# name): several times the cost of tuple.__new__, which those paths call instead, as
# ``build(MacKey, (rd, etag, mac, ip))``: every field, in order (nothing checks the count).
build = tuple.__new__
