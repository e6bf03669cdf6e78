"""The ground floor: frame constants, the clock, counters, percentiles, lifecycle, the zone
tree and priorities. Imports nothing else of Loa."""
