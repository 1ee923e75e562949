"""The checks of `liqsim validate`, one module per family; :mod:`sim.qa.validate` runs them in
report order and writes the report.

``common`` (the report row ``Check``, the bands ``BANDS``, the root seed, row formatting and the
baseline runs), ``compute`` (the frontier price of compute and declines per year, shared by 4
and 8), ``classic`` (1), ``gai_kapadia`` (2a-2f), ``gk_network`` (2g-2i), ``nesting`` (3),
``calibration`` (4), ``asic_2022`` (5), ``time_to_sell`` (6), ``fire_sale`` (7), ``backtest``
(8). A family imports ``common`` and ``compute`` only, but for 2g-2i (the standalone window of
2a-2f beside it) and 4e (the backtest's runs).
"""
