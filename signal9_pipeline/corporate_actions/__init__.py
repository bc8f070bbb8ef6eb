"""Corporate actions: splits, dividends and symbol changes stored per symbol; bars adjusted on read."""
