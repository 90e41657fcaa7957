"""YOLO specimen detector: one class ("specimen"), trained offline from scratch.

- ``offline``: keeps ultralytics off the network (``configure_offline``, before its first import;
  every function of this package calls it itself) and reports package versions.
- ``dataset``: ``prepare_yolo_dataset``, a deterministic YOLO dataset from the 'train' half of the
  real dev set (COCO) and generated well photos with exact boxes (the caller passes the generator).
- ``train``: ``train_detector`` (writes ``weights.pt``, ``model.onnx``, ``report.json``),
  ``export_onnx``, ``evaluate_holdout``.
- ``backends``: ``YoloDetector`` (backend ``yolo``: ultralytics + torch; GPU when present, else
  CPU; batched) and ``OnnxDetector`` (backend ``onnx``: the exported model on onnxruntime (CPU),
  with ultralytics' letterbox and NMS reimplemented in numpy; imports neither torch nor ultralytics).

Command line: ``bioscan-rebuild train-detector --out DIR [--dev-dir DIR | --no-real] ...``.
"""
