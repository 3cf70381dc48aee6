
s*
a1Zzzbyy