"""Which instance a call goes to, and what happens when it fails: load-balancing strategies,
version ranges, compatibility routing, instance health (circuit breaking, outlier ejection),
retry policies and budgets. The client uses them; see docs/resilience.md."""
