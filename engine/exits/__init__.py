"""Exit plans: breakeven, trailing and a step ladder, evaluated per mark-price tick."""
