"""`gemmaios farm`: the XCTest bench on AWS Device Farm (optional extra: `pip install 'gemmaios[farm]'`).

- `service`: the one boundary to Device Farm (boto3; every request checked by botocore's validator).
- `testspec`: the test spec, rendered from a template and checked against the documented schema.
- `flow`: plan (costs) → upload → schedule → follow → fetch → report, recorded in the build folder.
- `errors`: the named errors.

It has never met the real service: the tests drive it against a labelled stand-in (tests/farm_standin.py).
"""
