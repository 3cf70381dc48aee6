
s*
byesbb