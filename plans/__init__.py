"""Plans: the plan catalogue, subscriptions, add-ons, the credit ledger, client allocations and
usage statements. (Filled by the plans issue; the app exists so the layout is stable.)"""
