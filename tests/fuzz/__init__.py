"""Contract-driven fuzzing of every RPC of every registered service (issue 12, item 4).

- `generate`: requests from the method descriptors alone (empty, random well-typed, hostile,
  not protobuf), for all four method kinds, deterministic from a seed;
- `pool`: names, etags, cursors and page tokens from OK answers, for later requests;
- `harness`: sends the calls with real tokens and checks every answer against the error
  contract and the stores against refused mutations; `Report` prints totals and violations;
- `suite`: the four services in this process on one backend, quiet, warmed up;
- `test_contract_fuzz`: the fixed-seed budget in `make test`; `python -m tests.fuzz`
  (`make fuzz`): the long run.
"""
