"""The published README's Quick Start, verbatim but for the repository name (argv[1]).

Run by test_readme_example.py with the published tilde-sdk in its own virtual environment; the key and the
server's address come from TILDE_API_KEY and TILDE_ENDPOINT_URL, as the README says.
"""

import sys

import tilde

repo = tilde.repository(sys.argv[1])

# Run commands in an interactive sandbox
with repo.shell(image="python:3.12") as sh:
    sh.run("pip install pandas")
    result = sh.run("python train.py")
    print(result.stdout.text())

    # Stream output line by line
    result = sh.run("cat /sandbox/results.csv")
    for line in result.stdout.iter_lines():
        print(line)
