-- INDEX_CLEANUP ON: with few dead rows VACUUM would otherwise skip the index.
VACUUM (INDEX_CLEANUP ON) soak;
