
:
seed-1€³¾Ž	sensor-01"temperature:23.5*
locationA