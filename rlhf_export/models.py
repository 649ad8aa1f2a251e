# ExportJob and its artifacts arrive with the export issue (see ARCHITECTURE.md §Domain).
