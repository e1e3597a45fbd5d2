"""Click commands of seco (installed as ``seco_cli``): thin shells over seco_data and seco_train."""
