"""Provisioning's application layer: the unit of work (`unit_of_work`) and one function
per use case (`cosell`, `subscriptions`, `terminals`), the operations worker
(`operations`) and housekeeping (`housekeeping`). The servicer calls these; they apply
`domain` rules to rows the `store` finds and locks."""
