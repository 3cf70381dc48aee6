
s*	
atrueZaba