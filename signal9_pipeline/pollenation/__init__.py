"""Pollenation of newly listed symbols: the sensor that finds them, the job that announces them."""
