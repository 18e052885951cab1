import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import time, featcomp
t=time.time()
r = featcomp.compress(f"{SHARED}/models/mobilenet_v2_1.0_224.onnx", f"{SHARED}/data/imagenet-calib-200", preprocess="resize=256,crop=224,order=rgb,mean=128,std=128", limit=8, output_snr_db=20)
featcomp.save_model(r.model, f"{WORK}/mb.fc.onnx")
print("compress s", time.time()-t)
