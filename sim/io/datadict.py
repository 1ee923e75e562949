"""The data dictionary of a run's tables: unit and meaning of every column.

One source for three things, so they cannot drift apart:

* the field metadata of ``series.parquet``, ``panel.parquet`` and ``events.parquet``
  (:func:`to_parquet` writes ``unit`` and ``description`` on every field, and dates as dates);
* ``docs/data_dictionary.md`` (:func:`markdown`; ``python -m sim.io.datadict`` rewrites it and a
  test checks the committed page is what it generates);
* the test that every column :mod:`sim.world.metrics` produces is described here.

Per-generation series columns are named ``<key>_<generation>`` (``price_H100``); they are
described once, as ``<key>_<gen>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

GEN = "<gen>"
PAGE = Path(__file__).resolve().parents[2] / "docs" / "data_dictionary.md"

# the losses' records (issue 15, sim.world.losses)
SL = "with `metrics.system_loss` (on by default): cumulative from t0, positive = a loss; "

SERIES: dict[str, tuple[str, str]] = {
    "month": ("month", "model month, 0 = t0 (the scenario's start, December 2025 by default)"),
    "date": ("date", "first day of the calendar month of `month`"),
    "btc": ("$/BTC", "BTC price"),
    "hashprice": ("$/PH/day", "mining revenue per unit of hashrate"),
    "stress": ("true/false", "the stress indicator (BTC drawdown from its peak past "
                             "`environment.stress_drawdown`)"),
    f"rent_{GEN}": ("$/GPU-hour", "spot rent of the generation; empty before its launch"),
    f"price_{GEN}": ("$/GPU", "price index: the month's auction clearing price, or the best bid "
                              "when nothing traded; empty before the generation's launch"),
    f"fundamental_{GEN}": ("$/GPU", "value in best use: what the best secondary buyer would pay "
                                    "(discounted net rent less integration cost); empty before "
                                    "launch"),
    f"volume_{GEN}": ("GPUs", "units traded in the month's auction"),
    f"forced_volume_{GEN}": ("GPUs", "units sold in forced sales (lenders' repossessed GPUs)"),
    f"overhang_{GEN}": ("GPUs", "forced units offered but left unsold after the auction; 0 "
                                "whenever `market.unsold_to_salvage` is true (the default: the "
                                "salvage sink takes every unsold unit at the floor)"),
    f"salvage_{GEN}": ("GPUs", "units bought by the salvage sink (with "
                               "`buyers.outside_demand.enabled`: by the outside demand)"),
    "defaults_miner": ("borrowers", "new miner defaults in the month"),
    "defaults_neocloud": ("borrowers", "new neo-cloud defaults in the month"),
    "credit_losses": ("$", "cumulative credit losses: write-offs less recoveries"),
    "writeoffs": ("$", "cumulative exposure at default written off"),
    "recoveries": ("$", "cumulative recoveries (seized cash and BTC, GPU sale proceeds)"),
    "lender_failures": ("lenders", "lenders failed so far"),
    "lenders_deleveraging": ("lenders", "lenders deleveraging in the month"),
    "lender_equity": ("$", "lenders' total equity"),
    "inventory_units": ("GPUs", "repossessed GPUs lenders hold, not yet sold"),
    "repo_lent": ("$", "repo loans the desk has outstanding"),
    "repo_units": ("GPUs", "GPUs the repo desk holds"),
    "buyer_capacity_h100": ("GPUs", "units of H100 (the first generation where there is no "
                                    "H100) secondary buyers could still absorb at the month's "
                                    "price, by capital and spare power; capped at 1e15"),
    "forced_value": ("$", "cumulative proceeds of forced sales"),
    "forced_fundamental": ("$", "cumulative value in best use of the units sold in forced "
                                "sales (1 - forced_value / this = the fire-sale discount)"),
    "forced_repossession_value": ("$", "only with `buyers.outside_demand.enabled`: cumulative "
                                       "value in best use at repossession of the units sold in "
                                       "forced sales (1 - forced_value / this = the fire-sale "
                                       "discount)"),
    f"outside_pinned_{GEN}": ("true/false", "only with `buyers.outside_demand.enabled`: the "
                                            "month's clearing price was set by the outside "
                                            "demand (not news to buyers' expectations)"),
    "max_fill_above_reservation": ("$/GPU", "largest fill above a buyer's reservation price in "
                                            "the month (an accounting check: always 0)"),
    # power and cooling (only with sites.enabled; docs/model.md, "Power and cooling"); IT MW
    "site_mw_borrowers": ("MW", "data and mining halls of living borrowers' sites"),
    "site_mw_lenders": ("MW", "repossessed sites lenders hold, not yet sold"),
    "site_mw_repossessed": ("MW", "cumulative MW of sites lenders took at default"),
    "site_mw_sold": ("MW", "cumulative MW of repossessed sites sold to secondary buyers"),
    "site_mw_retired": ("MW", "cumulative MW of repossessed sites given up unsold"),
    "site_sale_proceeds": ("$", "cumulative proceeds of site sales"),
    "hosting_income": ("$", "cumulative net income lenders earned running repossessed GPUs "
                            "in place at a host"),
    "buyer_spare_mw_air": ("MW", "secondary buyers' spare air-cooled MW"),
    "buyer_spare_mw_liquid": ("MW", "secondary buyers' spare liquid-cooled MW"),
    "buyer_mw_converting": ("MW", "buyers' MW being converted from air to liquid cooling"),
    "buyer_mw_converted": ("MW", "cumulative MW whose air-to-liquid conversion started"),
    "miner_mw_hosting": ("MW", "mining MW living miners let to AI tenants"),
    # issue 15, "Losses counted for everyone" (sim.world.losses; docs/model.md): W = wealth marked
    # to market (GPUs at the price index), loss = W(t0) - W(t)
    "loss_lenders": ("$", SL + "lenders: cash + GPU loans + repossessed GPUs + other loans - "
                              "outside funding - repo debt"),
    "loss_desk": ("$", SL + "minus the repo desk's P&L = -(desk_cash_flows + desk_mark)"),
    "loss_lolr": ("$", SL + "the buyer of last resort (policy.lolr; 0 when off): cash + GPUs "
                           "at the price index (its rent, running costs and cost of capital "
                           "are in its cash), less its cost of capital not yet paid"),
    "loss_buyers": ("$", SL + "secondary buyers: capital + GPUs, less the capital their owners "
                             "put in, plus the net operating income imputed on the GPUs they "
                             "hold (sim.world.losses.holder_margin)"),
    "loss_borrowers": ("$", SL + "borrowers: cash + fleet + BTC - debt, plus payouts and "
                                "estate surpluses their owners received"),
    "loss_outside": ("$", SL + "the outside sector: the sum of the four loss_outside_* "
                              "columns"),
    "loss_outside_buyers": ("$", SL + "out-of-sector buyers (salvage, outside demand): 0, a GPU "
                                     "sold out of the sector leaves the accounts at its sale "
                                     "price"),
    "loss_outside_suppliers": ("$", SL + "suppliers' unpaid bills of defaulted borrowers"),
    "loss_outside_funders": ("$", SL + "outside funders: minus (the change in the lenders' "
                                      "outside funding + what the lenders paid them + the "
                                      "policies' cost of capital paid or owed to them)"),
    "loss_outside_other_borrowers": ("$", SL + "borrowers of the lenders' other loans: the "
                                              "interest they paid less their debt written off"),
    "system_loss": ("$", SL + "sum of loss_lenders, loss_desk, loss_lolr, loss_buyers, "
                             "loss_borrowers and loss_outside (payments between parties "
                             "cancel; negative = a net gain) = sl_value_destroyed + "
                             "sl_btc_value_fall - sl_operating_income + sl_discount + "
                             "sl_holding_costs"),
    "system_loss_at_value": ("$", SL + "the system loss with every GPU in the sector marked at "
                                      "its value in best use instead of the price index: "
                                      "system_loss - (sl_discount - sl_discount_outside)"),
    "loss_lenders_credit": ("$", SL + "lenders' credit losses at write-off (net credit losses "
                                     "without `metrics.losses_at_writeoff`)"),
    "loss_lenders_recoveries": ("$", SL + "lenders' recoveries after the write-off (0 without "
                                         "`metrics.losses_at_writeoff`)"),
    "loss_lenders_net": ("$", SL + "lenders' net credit losses (write-offs less all "
                                  "recoveries)"),
    "loss_lenders_other": ("$", SL + "lenders' losses on their other (non-GPU) loans"),
    "loss_borrowers_wiped_out": ("$", SL + "t0 equity at value in best use (cash + fleet x "
                                          "value in best use + BTC - debt, floored at 0) of the "
                                          "borrowers that have defaulted"),
    "desk_cash_flows": ("$", SL + "the repo desk's net cash flows: repo loans made (-), repaid "
                                 "(+), interest received (+), GPUs bought (-) and sold (+), "
                                 "its cost of capital paid (-)"),
    "desk_mark": ("$", SL + "the repo desk's repo loans outstanding at face plus its GPUs at "
                           "the price index, less its cost of capital not yet paid"),
    "sl_value_destroyed": ("$", SL + "fall of the GPU stock's value in best use, U.V(t0) - "
                                    "U.V(t) - E: U the units in the sector, E the value in best "
                                    "use of the units sold out of it, each at its month's V"),
    "sl_btc_value_fall": ("$", SL + "fall of the borrowers' BTC value, net of the BTC sold"),
    "sl_operating_income": ("$", SL + "rents less operating costs earned on the GPUs, "
                                     "secondary buyers' imputed (a gain: enters the system loss "
                                     "with a minus sign)"),
    "sl_discount": ("$", SL + "change of the stock's discount below its value in best use, "
                             "U.(V - p)(t) - U.(V - p)(t0), plus sl_discount_outside"),
    "sl_holding_costs": ("$", SL + "lenders' holding costs of repossessed GPUs paid"),
    "sl_discount_outside": ("$", SL + "the part of sl_discount on the units sold out of the "
                                     "sector: E less what their buyers paid"),
}

PANEL: dict[str, tuple[str, str]] = {
    "month": ("month", "model month, 0 = t0"),
    "agent": ("", "the agent's node in network.graphml"),
    "name": ("", "agent name: L<i> lender, M<i> miner, N<i> neo-cloud, S<i> secondary buyer"),
    "kind": ("", "lender type (bank, private_credit, abl, ...), miner, neocloud, or buyer type "
                 "(hyperscaler, tier2, broker, ...)"),
    "state": ("", "lenders: normal, deleveraging, failed; borrowers: healthy, distressed (in "
                  "arrears or under a margin call), defaulted; buyers: active"),
    "cash": ("$", "cash held (buyers: capital left for purchases)"),
    "size": ("$", "balance-sheet size: lenders' assets; borrowers' fleet at the price index "
                  "plus BTC; buyers' capital plus holdings at the price index"),
}

EVENTS: dict[str, tuple[str, str]] = {
    "month": ("month", "model month of the event"),
    "event": ("", "sale, purchase, margin_call, default_payment, default_covenant, "
                  "default_dscr, loan_accelerated_repaid (a called facility paid off in full), "
                  "repossession, refinancing_refused, repo_loan, deleveraging, lender_failure, "
                  "guarantee_withdrawn; with sites on also site_sale, site_fleet_sale and "
                  "site_retired"),
    "agent": ("", "who: lender, miner, neocloud, buyer, salvage, repo_desk, borrower"),
    "index": ("", "the agent's index within its kind (lender i is L<i> in the panel)"),
    "generation": ("", "GPU generation of a sale, purchase or repossession; empty otherwise"),
    "units": ("GPUs", "GPUs sold, bought or repossessed; 0 for other events"),
    "price": ("$/GPU", "auction clearing price of a sale or purchase (the price index for a "
                       "site_fleet_sale); empty otherwise"),
    "value": ("$", "units x price of a sale or purchase (site_fleet_sale too), or the price "
                   "paid for a site (site_sale); empty otherwise"),
    "debt": ("$", "debt outstanding: of the borrower (margin_call, default_*), paid off "
                  "by the borrower when its facility was called (loan_accelerated_repaid), "
                  "or the loan principal refused (refinancing_refused); empty otherwise"),
    "collateral": ("$", "collateral value at the lender's mark when the borrower defaulted "
                        "(default_*); empty otherwise"),
    "ltv": ("ratio", "loan-to-value that triggered the margin call (margin_call); empty "
                     "otherwise"),
    "loan": ("$", "repo loan granted (repo_loan); empty otherwise"),
    "equity": ("$", "the lender's equity (deleveraging, lender_failure); empty otherwise"),
    "mw": ("MW", "IT load of a site the lender gave up unsold (site_retired); empty "
                 "otherwise"),
}

TABLES = {"series": SERIES, "panel": PANEL, "events": EVENTS}


def describe(table: str, column: str, generations: list[str] | tuple = ()) -> tuple[str, str]:
    """(unit, description) of ``column`` of ``table``; KeyError if it is not described."""
    docs = TABLES[table]
    if column in docs:
        return docs[column]
    for g in sorted(generations, key=len, reverse=True):
        if column.endswith(f"_{g}"):
            key = column[: -len(g)] + GEN
            if key in docs:
                unit, text = docs[key]
                return unit, f"{g}: {text}"
    raise KeyError(f"{table}.{column} is not in the data dictionary (sim/io/datadict.py)")


def to_table(frame: pd.DataFrame, table: str, generations: list[str] | tuple = ()) -> pa.Table:
    """``frame`` as an Arrow table whose every field carries ``unit`` and ``description``;
    a ``date`` column is stored as a date (date32)."""
    t = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in t.schema:
        unit, text = describe(table, f.name, generations)
        kind = pa.date32() if f.name == "date" else f.type
        fields.append(pa.field(f.name, kind, f.nullable,
                               metadata={"unit": unit, "description": text}))
    schema = pa.schema(fields, metadata={"table": table,
                                         "dictionary": "docs/data_dictionary.md"})
    return t.cast(schema)


def to_parquet(frame: pd.DataFrame, table: str, path, generations: list[str] | tuple = ()
               ) -> None:
    pq.write_table(to_table(frame, table, generations), path)


def markdown() -> str:
    """The data dictionary page (docs/data_dictionary.md)."""
    lines = ["# Data dictionary", "",
             "<!-- generated by `python -m sim.io.datadict` from sim/io/datadict.py; "
             "do not edit -->",
             "",
             "The columns of a run's tables (`liqsim run` writes them as Parquet into "
             "`results/<name>/`; `sim.run()` returns them as DataFrames). Each Parquet field "
             "carries the same `unit` and `description` as metadata:",
             "",
             "```python",
             "import pyarrow.parquet as pq",
             "pq.read_schema(\"results/baseline/series.parquet\").field(\"price_H100\").metadata",
             "```", "",
             f"Columns named `<key>_{GEN}` exist once per GPU generation of the scenario "
             "(`price_H100`, `price_Rubin`, ...). Empty means null (NaN): not applicable, "
             "never zero.", ""]
    files = {"series": "series.parquet: one row per month",
             "panel": "panel.parquet: one row per agent per month",
             "events": "events.parquet: one row per event"}
    for name, docs in TABLES.items():
        lines += [f"## {files[name]}", "", "| column | unit | meaning |", "|---|---|---|"]
        lines += [f"| `{c}` | {u} | {d} |" for c, (u, d) in docs.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    PAGE.write_text(markdown(), encoding="utf-8")
    sys.stdout.write(f"wrote {PAGE}\n")
