"""Input attacks and internal weight perturbations (seeds 002, and the robustness halves). Arrive with their own issues."""
