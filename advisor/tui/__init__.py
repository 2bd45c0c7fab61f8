"""The Textual face of sftplan: a thin shell over advisor.planner / planfile / render and `sftplan run`."""
