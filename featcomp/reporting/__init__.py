"""featcomp.reporting: the report schema (the source of truth), measurement, and rendering.

Not named `report`: that would shadow the public function featcomp.report (importing a submodule sets
the attribute of that name on its parent package).
"""
